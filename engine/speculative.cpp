// Speculative-decoding verification (see speculative.h).
#include "engine/speculative.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>

#include "kernels/splitmix64.h"

namespace ds4 {
namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "%s:%d: speculative: %s\n", __FILE__, __LINE__, what);
  std::abort();
}

// Draws from max(0, p - q) normalised, over p's candidates in p's draw order.
int32_t sample_residual(const TokenDistribution& p, const TokenDistribution& q, double u) {
  std::unordered_map<int32_t, double> q_prob;
  q_prob.reserve(q.ids.size());
  for (size_t i = 0; i < q.ids.size(); ++i) q_prob[q.ids[i]] = q.weights[i] / q.total;
  TokenDistribution r;
  for (size_t i = 0; i < p.ids.size(); ++i) {
    const auto it = q_prob.find(p.ids[i]);
    const double w = p.weights[i] / p.total - (it == q_prob.end() ? 0.0 : it->second);
    if (w <= 0.0) continue;
    r.ids.push_back(p.ids[i]);
    r.weights.push_back(w);
    r.total += w;
  }
  return r.ids.empty() ? sample_from(p, u) : sample_from(r, u);
}

}  // namespace

double speculative_uniform(uint64_t seed, uint64_t step, SpecStream stream) {
  // A distinct seed per stream, then the sampler's own counter-based draw.
  return sampling_uniform(splitmix64(seed ^ (static_cast<uint64_t>(stream) * 0x9e3779b97f4a7c15ull)), step);
}

TokenDistribution point_mass(int32_t token) {
  TokenDistribution d;
  d.ids = {token};
  d.weights = {1.0};
  d.total = 1.0;
  return d;
}

DraftVerdict verify_draft(const TokenDistribution& p, const TokenDistribution& q, int32_t draft, double u_accept,
                          double u_residual) {
  const double qd = q.prob(draft);
  if (!(qd > 0.0)) fail("draft token has no probability under its draft distribution");
  if (u_accept * qd < p.prob(draft)) return {true, draft};
  return {false, sample_residual(p, q, u_residual)};
}

std::vector<int32_t> verify_chain(std::span<const TokenDistribution> p, std::span<const TokenDistribution> q,
                                  std::span<const int32_t> drafts, const SpecUniform& u) {
  const size_t k = drafts.size();
  if (q.size() != k || p.size() != k + 1) fail("verify_chain: need k drafts, k draft and k + 1 target distributions");
  std::vector<int32_t> out;
  for (size_t j = 0; j < k; ++j) {
    const int jj = static_cast<int>(j);
    const DraftVerdict v = verify_draft(p[j], q[j], drafts[j], u(jj, SpecStream::kAccept), u(jj, SpecStream::kResidual));
    out.push_back(v.token);
    if (!v.accepted) return out;
  }
  out.push_back(sample_from(p[k], u(static_cast<int>(k), kBonusStream)));
  return out;
}

}  // namespace ds4
