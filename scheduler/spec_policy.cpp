// SpecPolicy and LinearFit (see spec_policy.h).
#include "scheduler/spec_policy.h"

#include <algorithm>
#include <stdexcept>

namespace ds4 {
namespace {

// Acceptance counts forget more slowly than timings: one step records one verification per sequence.
constexpr double kAcceptanceDecay = 0.995;
// Beta(1, 1) prior per position: an unmeasured position is a coin flip.
constexpr double kPriorTried = 2.0, kPriorAccepted = 1.0;
// A K > 0 must beat K = 0 by this factor (drafting has costs the model does not see: sampling, copies).
constexpr double kMinGain = 1.02;

}  // namespace

void LinearFit::add(double x, double y) {
  w_ = w_ * decay_ + 1.0;
  sx_ = sx_ * decay_ + x;
  sy_ = sy_ * decay_ + y;
  sxx_ = sxx_ * decay_ + x * x;
  sxy_ = sxy_ * decay_ + x * y;
  if (samples_ == 0) first_x_ = x;
  varied_ = varied_ || x != first_x_;
  ++samples_;
}

bool LinearFit::ready() const { return varied_; }

double LinearFit::slope() const {
  if (!varied_) return 0.0;
  const double var = sxx_ * w_ - sx_ * sx_;
  if (var <= 0.0) return 0.0;
  return std::max(0.0, (sxy_ * w_ - sx_ * sy_) / var);  // costs never fall with more rows
}

double LinearFit::intercept() const {
  if (w_ <= 0.0) return 0.0;
  return std::max(0.0, (sy_ - slope() * sx_) / w_);
}

SpecPolicy::SpecPolicy(SpecPolicyConfig config)
    : config_(config), target_(config.decay), draft_(config.decay) {
  if (config_.max_draft < 0 || config_.probe_interval < 1 || !(config_.decay > 0.0 && config_.decay <= 1.0))
    throw std::invalid_argument("SpecPolicy: max_draft >= 0, probe_interval >= 1 and decay in (0, 1] are required");
  tried_.assign(config_.max_draft, kPriorTried);
  accepted_.assign(config_.max_draft, kPriorAccepted);
}

void SpecPolicy::record_verification(int drafted, int accepted) {
  drafted = std::min(drafted, config_.max_draft);
  // Position j is observed when every draft before it was accepted.
  for (int j = 0; j < drafted && j <= accepted; ++j) {
    tried_[j] = tried_[j] * kAcceptanceDecay + 1.0;
    accepted_[j] = accepted_[j] * kAcceptanceDecay + (j < accepted ? 1.0 : 0.0);
  }
}

void SpecPolicy::record_target(int64_t target_rows, double forward_us) { target_.add(double(target_rows), forward_us); }
void SpecPolicy::record_draft_call(int64_t rows, double us) { draft_.add(double(rows), us); }

double SpecPolicy::acceptance(int j) const {
  if (j < 1 || j > config_.max_draft) return 0.0;
  return accepted_[j - 1] / tried_[j - 1];
}

double SpecPolicy::expected_tokens(int k) const {
  double expected = 1.0, all_accepted = 1.0;
  for (int j = 1; j <= std::min(k, config_.max_draft); ++j) {
    all_accepted *= acceptance(j);
    expected += all_accepted;
  }
  return expected;
}

bool SpecPolicy::cost_model_ready() const { return target_.ready() && target_.samples() >= config_.min_cost_samples; }

double SpecPolicy::step_cost_us(int num_seqs, int k) const {
  if (!cost_model_ready()) return -1.0;
  const double b = double(std::max(num_seqs, 1));
  double cost = target_.predict(b * (1 + k));
  if (k > 0 && draft_.samples() > 0) {
    // One catch-up call over the rows the last step accepted, then one call per further draft.
    const int calls = k + config_.draft_calls_extra;
    cost += draft_.predict(b * expected_tokens(k)) + (calls - 1) * draft_.predict(b);
  }
  return cost;
}

int SpecPolicy::choose(int num_seqs) {
  if (!config_.adaptive || config_.max_draft == 0) return config_.max_draft;
  if (!cost_model_ready()) return 1;  // measure first, cheaply (rows differ between steps)
  int best_k = 0;
  double best = expected_tokens(0) / step_cost_us(num_seqs, 0);
  for (int k = 1; k <= config_.max_draft; ++k) {
    const double rate = expected_tokens(k) / step_cost_us(num_seqs, k);
    if (rate > best * kMinGain) {
      best = rate;
      best_k = k;
    }
  }
  if (best_k > 0) {
    steps_at_zero_ = 0;
    return best_k;
  }
  if (++steps_at_zero_ >= config_.probe_interval) {
    steps_at_zero_ = 0;
    return 1;  // keep the acceptance estimate alive
  }
  return 0;
}

}  // namespace ds4
