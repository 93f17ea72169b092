// Arrival gaps for the open loop (see arrivals.h).
#include "loadtest/arrivals.h"

#include <algorithm>
#include <cmath>

namespace ds4::loadtest {

ArrivalProcess::ArrivalProcess(double rate_per_s, double burstiness, uint64_t seed)
    : rate_per_s_(rate_per_s), burstiness_(burstiness), rng_(seed) {}

double ArrivalProcess::next_gap_s() {
  if (std::isinf(burstiness_)) return 1.0 / rate_per_s_;
  if (burstiness_ == 1.0) return std::exponential_distribution<double>(rate_per_s_)(rng_);
  // Gamma with shape k and scale 1/(rate*k) has mean 1/rate and coefficient of variation 1/sqrt(k).
  return std::gamma_distribution<double>(burstiness_, 1.0 / (rate_per_s_ * burstiness_))(rng_);
}

std::vector<double> arrival_times(double rate_per_s, double burstiness, uint64_t seed, int64_t n) {
  ArrivalProcess p(rate_per_s, burstiness, seed);
  std::vector<double> t;
  t.reserve(static_cast<size_t>(std::max<int64_t>(n, 0)));
  double now = 0;
  for (int64_t i = 0; i < n; ++i) {
    t.push_back(now);
    now += p.next_gap_s();
  }
  return t;
}

}  // namespace ds4::loadtest
