// SpecPolicy: how many draft tokens per sequence (K, 0 included) the next step verifies, from the
// number of decoding sequences and what was measured so far: the per-position acceptance rate
// alpha_j = P(draft j accepted | drafts before it accepted) and a linear cost model of a step
// (target forward a + b * rows, draft call c + d * rows, each fitted by exponentially weighted least
// squares). K maximises expected emitted tokens per microsecond:
//   B * (1 + sum_{j<=K} prod_{i<=j} alpha_i) / (target(B * (1 + K)) + drafting(B, K)).
// Speculation pays while the fixed cost a dominates (small batches) and stops paying when rows
// cost (large batches) or acceptance is low. While K = 0 nothing is measured, so every
// probe_interval steps one step probes K = 1; before the cost model has data it uses K = 1 too, and
// deeper positions are tried once the first ones look good (their prior is a coin flip).
// Deterministic given its inputs (no clock inside).
// Owned by the Speculator; engine thread only.
#pragma once
#include <cstdint>
#include <vector>

namespace ds4 {

struct SpecPolicyConfig {
  int max_draft = 3;           // K at most
  bool adaptive = true;        // false: always max_draft
  int draft_calls_extra = 0;   // draft calls per step beyond K (1 for ds4's pairing: one call for the known token)
  int probe_interval = 32;     // steps at K = 0 before one step probes K = 1
  double decay = 0.97;         // weight of the past per update (acceptance and cost fits)
  int min_cost_samples = 4;    // steps measured (with two different row counts) before the cost model is used
};

// y = a + b * x fitted by exponentially weighted least squares.
class LinearFit {
 public:
  explicit LinearFit(double decay) : decay_(decay) {}
  void add(double x, double y);
  // False until two different x have been seen.
  bool ready() const;
  double intercept() const;
  double slope() const;
  double predict(double x) const { return intercept() + slope() * x; }
  int64_t samples() const { return samples_; }

 private:
  double decay_;
  double w_ = 0, sx_ = 0, sy_ = 0, sxx_ = 0, sxy_ = 0;
  double first_x_ = 0;
  bool varied_ = false;
  int64_t samples_ = 0;
};

class SpecPolicy {
 public:
  explicit SpecPolicy(SpecPolicyConfig config);
  const SpecPolicyConfig& config() const { return config_; }

  // K for a step in which num_seqs sequences decode.
  int choose(int num_seqs);
  // One sequence's verification: `drafted` drafts, the first `accepted` of them accepted.
  void record_verification(int drafted, int accepted);
  // One step's timings: the target forward over target_rows rows; the draft calls (each with its
  // row count and time), if any.
  void record_target(int64_t target_rows, double forward_us);
  void record_draft_call(int64_t rows, double us);

  // Estimated P(draft j accepted | drafts before it accepted), j = 1..max_draft.
  double acceptance(int j) const;
  // 1 + expected accepted drafts with k drafts.
  double expected_tokens(int k) const;
  // Estimated step time for num_seqs sequences with k drafts each (us); negative when unknown.
  double step_cost_us(int num_seqs, int k) const;
  bool cost_model_ready() const;

 private:
  SpecPolicyConfig config_;
  std::vector<double> tried_, accepted_;  // [max_draft], decayed counts per position
  LinearFit target_, draft_;
  int steps_at_zero_ = 0;
};

}  // namespace ds4
