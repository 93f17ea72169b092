// Open-loop arrival process: gaps between request arrivals for a target rate. burstiness 1 gives a
// Poisson process (exponential gaps); other values give gamma gaps with shape = burstiness and
// mean 1/rate (below 1 burstier, above 1 more regular); infinity gives a constant interval.
// Seeded, so a run is repeatable. Used by the runner; tested in loadtest_arrivals_test.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace ds4::loadtest {

class ArrivalProcess {
 public:
  // rate_per_s > 0; burstiness > 0 (may be +infinity).
  ArrivalProcess(double rate_per_s, double burstiness, uint64_t seed);
  double next_gap_s();

 private:
  double rate_per_s_, burstiness_;
  std::mt19937_64 rng_;
};

// The first n arrival times (seconds from the start; the first arrival is at 0).
std::vector<double> arrival_times(double rate_per_s, double burstiness, uint64_t seed, int64_t n);

}  // namespace ds4::loadtest
