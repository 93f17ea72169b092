// Unit tests of the open-loop arrival process: mean gap 1/rate, coefficient of variation 1 for
// Poisson and 1/sqrt(shape) for gamma, constant spacing for infinite burstiness, seed determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "loadtest/arrivals.h"

namespace lt = ds4::loadtest;

namespace {

void gap_stats(double rate, double burstiness, double* mean, double* cv) {
  std::vector<double> t = lt::arrival_times(rate, burstiness, 42, 40001);
  std::vector<double> gaps;
  for (size_t i = 1; i < t.size(); ++i) gaps.push_back(t[i] - t[i - 1]);
  *mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / gaps.size();
  double var = 0;
  for (double g : gaps) var += (g - *mean) * (g - *mean);
  *cv = std::sqrt(var / gaps.size()) / *mean;
}

}  // namespace

TEST(LoadtestArrivals, PoissonMeanAndSpread) {
  double mean = 0, cv = 0;
  gap_stats(4.0, 1.0, &mean, &cv);
  EXPECT_NEAR(mean, 0.25, 0.25 * 0.03);
  EXPECT_NEAR(cv, 1.0, 0.03);
}

TEST(LoadtestArrivals, GammaShapeSetsSpread) {
  double mean = 0, cv = 0;
  gap_stats(2.0, 4.0, &mean, &cv);
  EXPECT_NEAR(mean, 0.5, 0.5 * 0.03);
  EXPECT_NEAR(cv, 0.5, 0.03);
  gap_stats(2.0, 0.25, &mean, &cv);  // bursty: cv 2
  EXPECT_NEAR(mean, 0.5, 0.5 * 0.06);
  EXPECT_NEAR(cv, 2.0, 0.12);
}

TEST(LoadtestArrivals, InfiniteBurstinessIsEvenAndSeedsRepeat) {
  std::vector<double> t = lt::arrival_times(5.0, INFINITY, 1, 4);
  ASSERT_EQ(t.size(), 4u);
  EXPECT_DOUBLE_EQ(t[0], 0);
  EXPECT_NEAR(t[3], 0.6, 1e-12);
  EXPECT_EQ(lt::arrival_times(3.0, 1.0, 9, 50), lt::arrival_times(3.0, 1.0, 9, 50));
  EXPECT_NE(lt::arrival_times(3.0, 1.0, 9, 50), lt::arrival_times(3.0, 1.0, 10, 50));
}
