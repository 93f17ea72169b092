// SpecPolicy (scheduler/spec_policy.h) on synthetic measurements (no clock): the linear fit, the
// acceptance estimate per position, K from the cost model (speculation at small batches when the
// fixed cost dominates and acceptance is high; none at large batches or low acceptance), the
// periodic K = 1 probe while K = 0, and the fixed policy.
#include <gtest/gtest.h>

#include <cmath>

#include "scheduler/spec_policy.h"

namespace ds4 {
namespace {

TEST(LinearFit, RecoversALine) {
  LinearFit f(1.0);
  EXPECT_FALSE(f.ready());
  f.add(1, 12);
  EXPECT_FALSE(f.ready());  // one x: no slope yet
  EXPECT_DOUBLE_EQ(f.intercept(), 12);
  for (int x = 2; x <= 40; ++x) f.add(x, 10 + 2 * x);
  EXPECT_TRUE(f.ready());
  EXPECT_NEAR(f.slope(), 2.0, 1e-9);
  EXPECT_NEAR(f.intercept(), 10.0, 1e-9);
}

// Feeds a step-time model: forward(rows) = fixed + per_row * rows, draft call = d_fixed + d_row * rows.
void feed_costs(SpecPolicy& p, double fixed, double per_row, double d_fixed = 0, double d_row = 0) {
  for (int rows : {1, 4, 16, 64, 256, 2, 8, 32})
    for (int i = 0; i < 3; ++i) {
      p.record_target(rows, fixed + per_row * rows);
      p.record_draft_call(rows, d_fixed + d_row * rows);
    }
}

// Every draft accepted with probability alpha given the ones before it: P(accepted >= j) = alpha^j,
// spread deterministically over n verifications (the estimate forgets old ones, so evenly in time).
void feed_acceptance(SpecPolicy& p, double alpha, int k, int n = 2000) {
  for (int i = 0; i < n; ++i) {
    const double u = std::fmod(0.5 + i * 0.6180339887498949, 1.0);  // evenly spread in any window
    int accepted = 0;
    while (accepted < k && u < std::pow(alpha, accepted + 1)) ++accepted;
    p.record_verification(k, accepted);
  }
}

TEST(SpecPolicy, AcceptanceEstimatePerPosition) {
  SpecPolicy p({.max_draft = 3});
  EXPECT_DOUBLE_EQ(p.acceptance(1), 0.5);  // prior
  for (int i = 0; i < 3000; ++i) p.record_verification(3, i % 4 == 0 ? 0 : (i % 4 == 1 ? 1 : 3));
  // Position 1: accepted 3 of 4; position 2: reached 3 of 4, accepted 2 of those 3.
  EXPECT_NEAR(p.acceptance(1), 0.75, 0.02);
  EXPECT_NEAR(p.acceptance(2), 2.0 / 3.0, 0.02);
  EXPECT_NEAR(p.acceptance(3), 1.0, 0.02);
  EXPECT_NEAR(p.expected_tokens(2), 1 + 0.75 + 0.5, 0.03);
}

TEST(SpecPolicy, MeasuresBeforeDecidingThenSpeculatesWhenFixedCostDominates) {
  SpecPolicy p({.max_draft = 4});
  EXPECT_EQ(p.choose(1), 1);  // no cost model yet: measure with one draft
  feed_costs(p, /*fixed=*/10000, /*per_row=*/20, /*draft call*/ 300, 2);
  feed_acceptance(p, 0.8, 4);
  ASSERT_TRUE(p.cost_model_ready());
  EXPECT_NEAR(p.acceptance(2), 0.8, 0.02);
  const int k1 = p.choose(1);
  EXPECT_GE(k1, 3);  // 80% acceptance, rows nearly free at batch 1
  // At batch 256 each draft position adds 256 rows (5120 us) for fewer and fewer tokens.
  const int k256 = p.choose(256);
  EXPECT_LT(k256, k1);
  EXPECT_GE(k256, 1);
  // At batch 1024 the rows dominate: 1.8 tokens for (10000 + 2 x 20480) us loses to 1 for 30480.
  EXPECT_EQ(p.choose(1024), 0);
}

TEST(SpecPolicy, NoSpeculationWhenRowsCostOrAcceptanceIsLow) {
  SpecPolicy compute_bound({.max_draft = 3});
  feed_costs(compute_bound, 0, 100);  // no fixed cost: k drafts cost k rows for fewer tokens
  feed_acceptance(compute_bound, 0.9, 3);
  EXPECT_EQ(compute_bound.choose(4), 0);

  SpecPolicy low({.max_draft = 3});
  feed_costs(low, 10000, 20, 2000, 5);
  feed_acceptance(low, 0.0, 3);
  EXPECT_EQ(low.choose(1), 0);
}

TEST(SpecPolicy, ProbesWhileAtZeroAndFixedPolicyIgnoresCosts) {
  SpecPolicy p({.max_draft = 3, .probe_interval = 5});
  feed_costs(p, 0, 100);
  feed_acceptance(p, 0.0, 3);
  std::vector<int> ks;
  for (int i = 0; i < 10; ++i) ks.push_back(p.choose(2));
  EXPECT_EQ(ks, (std::vector<int>{0, 0, 0, 0, 1, 0, 0, 0, 0, 1}));

  SpecPolicy fixed({.max_draft = 2, .adaptive = false});
  feed_costs(fixed, 0, 100);
  feed_acceptance(fixed, 0.0, 2);
  EXPECT_EQ(fixed.choose(64), 2);
}

}  // namespace
}  // namespace ds4
