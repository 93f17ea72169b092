// Sampler: greedy picks the first maximum; filters (top-k, top-p, min-p) restrict the support;
// draws depend only on (seed, step); frequencies follow the softmax.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "engine/sampler.h"

namespace ds4 {
namespace {

TEST(Sampler, GreedyTakesFirstMaximum) {
  const std::vector<float> logits{0.5f, 2.0f, 2.0f, -1.0f};
  EXPECT_EQ(sample_token(logits, {.temperature = 0.0f}, 0), 1);
}

// Non-finite logits (corrupt weights) give a defined token: NaN entries are never drawn, all-NaN
// logits give token 0, +inf wins; before, a temperature draw over all-NaN logits read past the end.
TEST(Sampler, NonFiniteLogitsGiveADefinedToken) {
  const float nan = std::nanf("");
  const std::vector<float> all_nan(8, nan);
  const std::vector<float> some_nan{nan, 1.0f, nan, 3.0f, nan};
  const std::vector<float> with_inf{0.0f, INFINITY, 1.0f};
  for (const float t : {0.0f, 0.7f}) {
    for (uint64_t step = 0; step < 200; ++step) {
      EXPECT_EQ(sample_token(all_nan, {.temperature = t}, step), 0);
      const int32_t id = sample_token(some_nan, {.temperature = t, .top_p = 0.9f}, step);
      EXPECT_TRUE(id == 1 || id == 3) << id;
      EXPECT_EQ(sample_token(with_inf, {.temperature = t}, step), 1);
    }
  }
  EXPECT_EQ(sample_token(some_nan, {.temperature = 0.0f}, 0), 3);
}

std::set<int32_t> support(const std::vector<float>& logits, SamplingParams p, int draws = 4000) {
  std::set<int32_t> seen;
  for (int i = 0; i < draws; ++i) seen.insert(sample_token(logits, p, i));
  return seen;
}

TEST(Sampler, FiltersRestrictSupport) {
  const std::vector<float> logits{3.0f, 2.0f, 1.0f, 0.0f, -1.0f};
  EXPECT_EQ(support(logits, {.temperature = 1.0f}).size(), 5u);
  EXPECT_EQ(support(logits, {.temperature = 1.0f, .top_k = 2}), (std::set<int32_t>{0, 1}));
  // min_p 0.3: keep p >= 0.3 p_max, i.e. logit >= 3 + ln 0.3 = 1.79
  EXPECT_EQ(support(logits, {.temperature = 1.0f, .min_p = 0.3f}), (std::set<int32_t>{0, 1}));
  // top_p 0.6: p0 = 0.636 alone reaches it
  EXPECT_EQ(support(logits, {.temperature = 1.0f, .top_p = 0.6f}), (std::set<int32_t>{0}));
  EXPECT_EQ(support(logits, {.temperature = 1.0f, .top_p = 0.9f}), (std::set<int32_t>{0, 1, 2}));
}

TEST(Sampler, FrequenciesFollowSoftmax) {
  const std::vector<float> logits{1.0f, 0.0f};
  const double p0 = 1.0 / (1.0 + std::exp(-1.0));
  int count0 = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) count0 += sample_token(logits, {.temperature = 1.0f, .seed = 42}, i) == 0;
  EXPECT_NEAR(double(count0) / n, p0, 0.015);
  // Temperature 0.5 sharpens: p0 = sigmoid(2).
  count0 = 0;
  for (int i = 0; i < n; ++i) count0 += sample_token(logits, {.temperature = 0.5f, .seed = 42}, i) == 0;
  EXPECT_NEAR(double(count0) / n, 1.0 / (1.0 + std::exp(-2.0)), 0.015);
}

TEST(Sampler, DrawsDependOnlyOnSeedAndStep) {
  std::vector<float> logits(1000);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = std::sin(float(i));
  const SamplingParams p{.temperature = 1.0f, .seed = 7};
  std::vector<int32_t> a, b;
  for (int i = 0; i < 50; ++i) a.push_back(sample_token(logits, p, i));
  for (int i = 49; i >= 0; --i) b.insert(b.begin(), sample_token(logits, p, i));  // other order
  EXPECT_EQ(a, b);
  SamplingParams q = p;
  q.seed = 8;
  std::vector<int32_t> c;
  for (int i = 0; i < 50; ++i) c.push_back(sample_token(logits, q, i));
  EXPECT_NE(a, c);
}

}  // namespace
}  // namespace ds4
