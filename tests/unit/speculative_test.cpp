// Speculative verification (engine/speculative.h): one draft's output distribution equals the
// target's, computed by quadrature over both uniforms (a deterministic grid, so it cannot flake),
// for distributions with disjoint and shared support and for the sampler's filters; greedy point
// masses give exact-match acceptance; chains of drafts emit sequences distributed as the target
// (fixed-seed chi-square on a 3-token vocabulary); the distribution the sampler draws from is
// exactly what sample_token draws.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "engine/speculative.h"

namespace ds4 {
namespace {

TokenDistribution from_probs(const std::vector<double>& probs) {
  TokenDistribution d;
  for (size_t i = 0; i < probs.size(); ++i)
    if (probs[i] > 0) {
      d.ids.push_back(int32_t(i));
      d.weights.push_back(probs[i]);
      d.total += probs[i];
    }
  return d;
}

// P(output = t) of one verification with the draft drawn from q, by a midpoint grid of n points
// over u_accept (acceptance depends on it alone) and over u_residual (the replacement, on it alone).
std::vector<double> output_distribution(const TokenDistribution& p, const TokenDistribution& q, int vocab, int n) {
  std::vector<double> out(vocab, 0.0);
  for (size_t i = 0; i < q.ids.size(); ++i) {
    const int32_t d = q.ids[i];
    const double qd = q.weights[i] / q.total;
    double accepted = 0;
    for (int a = 0; a < n; ++a) accepted += verify_draft(p, q, d, (a + 0.5) / n, 0.5).accepted;
    accepted /= n;
    out[d] += qd * accepted;
    if (accepted >= 1.0) continue;
    for (int r = 0; r < n; ++r) {
      const DraftVerdict v = verify_draft(p, q, d, 1.0 - 1e-12, (r + 0.5) / n);
      EXPECT_FALSE(v.accepted);
      out[v.token] += qd * (1.0 - accepted) / n;
    }
  }
  return out;
}

void expect_target(const TokenDistribution& p, const TokenDistribution& q, int vocab) {
  const int n = 1 << 14;
  const std::vector<double> out = output_distribution(p, q, vocab, n);
  for (int t = 0; t < vocab; ++t) EXPECT_NEAR(out[t], p.prob(t), 4.0 / n) << "token " << t;
}

TEST(Speculative, OneDraftGivesTheTargetDistribution) {
  const int V = 6;
  expect_target(from_probs({0.1, 0.2, 0.3, 0.4, 0, 0}), from_probs({0.4, 0.3, 0.2, 0.1, 0, 0}), V);
  expect_target(from_probs({0.5, 0.5, 0, 0, 0, 0}), from_probs({0, 0, 0.25, 0.25, 0.5, 0}), V);  // disjoint
  expect_target(from_probs({0.05, 0.05, 0.05, 0.05, 0.4, 0.4}), from_probs({0.9, 0.02, 0.02, 0.02, 0.02, 0.02}), V);
  expect_target(from_probs({0, 0, 0, 1, 0, 0}), from_probs({0.2, 0.2, 0.2, 0.2, 0.1, 0.1}), V);  // greedy target
  // The sampler's own filtered distributions (temperature, top-k, min-p, top-p).
  const std::vector<float> target{1.0f, 2.5f, 0.3f, -1.0f, 2.0f, 0.0f}, draft{2.0f, 1.0f, 1.5f, 0.2f, -2.0f, 0.5f};
  for (const SamplingParams& sp : {SamplingParams{.temperature = 0.7f}, SamplingParams{.temperature = 1.3f, .top_k = 3},
                                   SamplingParams{.temperature = 1.0f, .min_p = 0.2f},
                                   SamplingParams{.temperature = 1.0f, .top_p = 0.8f}})
    expect_target(sampling_distribution(target, sp), sampling_distribution(draft, sp), V);
}

TEST(Speculative, GreedyIsExactMatch) {
  const TokenDistribution p = point_mass(3);
  EXPECT_TRUE(verify_draft(p, point_mass(3), 3, 0.999, 0.3).accepted);
  const DraftVerdict v = verify_draft(p, point_mass(2), 2, 0.0, 0.7);
  EXPECT_FALSE(v.accepted);
  EXPECT_EQ(v.token, 3);
  // A chain: target argmaxes 5, 6, 7, 8; drafts 5, 6, 9 -> 5, 6 accepted, then the target's 7.
  const std::vector<TokenDistribution> ps{point_mass(5), point_mass(6), point_mass(7), point_mass(8)};
  const std::vector<TokenDistribution> qs{point_mass(5), point_mass(6), point_mass(9)};
  const std::vector<int32_t> drafts{5, 6, 9};
  auto u = [](int, SpecStream) { return 0.5; };
  EXPECT_EQ(verify_chain(ps, qs, drafts, u), (std::vector<int32_t>{5, 6, 7}));
  const std::vector<int32_t> right{5, 6, 7};
  const std::vector<TokenDistribution> qr{point_mass(5), point_mass(6), point_mass(7)};
  EXPECT_EQ(verify_chain(ps, qr, right, u), (std::vector<int32_t>{5, 6, 7, 8}));  // all accepted + bonus
}

TEST(Speculative, SamplerDrawsFromItsDistribution) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> logit(-4.0f, 4.0f);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> logits(50);
    for (float& l : logits) l = logit(rng);
    const SamplingParams sp{.temperature = 0.5f + 0.01f * float(trial % 100), .top_p = trial % 3 == 0 ? 0.7f : 1.0f,
                            .min_p = trial % 4 == 0 ? 0.1f : 0.0f, .top_k = trial % 5 == 0 ? 7 : 0, .seed = uint64_t(trial)};
    const TokenDistribution d = sampling_distribution(logits, sp);
    for (uint64_t step = 0; step < 20; ++step)
      ASSERT_EQ(sample_token(logits, sp, step), sample_from(d, sampling_uniform(sp.seed, step)));
  }
}

// A 3-token language: the target's and the draft's next-token distributions depend on the
// previous token. Generation: chains of k = 2 drafts from the draft model (sampled with the draft
// stream), verified, until 3 tokens are out; the joint of the 3 tokens is the target's.
TEST(Speculative, ChainsGiveTheTargetsJointDistribution) {
  const double P[4][3] = {{0.2, 0.5, 0.3}, {0.6, 0.1, 0.3}, {0.1, 0.1, 0.8}, {0.3, 0.3, 0.4}};  // [prev + 1][next]
  const double Q[4][3] = {{0.4, 0.4, 0.2}, {0.3, 0.3, 0.4}, {0.2, 0.6, 0.2}, {0.5, 0.25, 0.25}};
  auto dist = [](const double (*m)[3], int prev) { return from_probs({m[prev + 1][0], m[prev + 1][1], m[prev + 1][2]}); };
  const int n = 60000;
  std::map<std::vector<int32_t>, int> counts;
  for (int i = 0; i < n; ++i) {
    const uint64_t seed = 1000 + i;
    std::vector<int32_t> out;
    while (out.size() < 3) {
      const int prev = out.empty() ? -1 : out.back();
      const uint64_t g0 = out.size();
      std::vector<TokenDistribution> ps{dist(P, prev)}, qs;
      std::vector<int32_t> drafts;
      for (int j = 0; j < 2; ++j) {
        qs.push_back(dist(Q, j == 0 ? prev : drafts.back()));
        drafts.push_back(sample_from(qs.back(), speculative_uniform(seed, g0 + j, SpecStream::kDraft)));
        ps.push_back(dist(P, drafts.back()));
      }
      const std::vector<int32_t> emitted = verify_chain(ps, qs, drafts, [&](int j, SpecStream s) {
        return s == kBonusStream ? sampling_uniform(seed, g0 + j) : speculative_uniform(seed, g0 + j, s);
      });
      out.insert(out.end(), emitted.begin(), emitted.end());
    }
    out.resize(3);
    counts[out] += 1;
  }
  double chi2 = 0;
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b)
      for (int c = 0; c < 3; ++c) {
        const double expected = n * P[0][a] * P[a + 1][b] * P[b + 1][c];
        const double got = counts[{a, b, c}];
        chi2 += (got - expected) * (got - expected) / expected;
      }
  // 26 degrees of freedom: P(chi2 > 54.05) = 0.001. The seeds are fixed, so the result is too.
  EXPECT_LT(chi2, 54.05);
}

}  // namespace
}  // namespace ds4
