// Sampler implementation (see sampler.h): candidates are filtered by top-k, min-p and top-p in
// descending probability order, then one is drawn proportionally to its probability.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/splitmix64.h"

namespace ds4 {
namespace {

// The first largest logit; NaN entries (corrupt weights, an overflow) are skipped, and all-NaN
// logits give token 0, so a broken forward pass yields a defined token, never undefined behaviour.
int32_t argmax(std::span<const float> logits) {
  size_t best = logits.size();
  for (size_t i = 0; i < logits.size(); ++i)
    if (!std::isnan(logits[i]) && (best == logits.size() || logits[i] > logits[best])) best = i;
  return best == logits.size() ? 0 : static_cast<int32_t>(best);
}

TokenDistribution greedy(std::span<const float> logits) {
  TokenDistribution d;
  d.ids = {argmax(logits)};
  d.weights = {1.0};
  d.total = 1.0;
  return d;
}

}  // namespace

double sampling_uniform(uint64_t seed, uint64_t step) {
  return static_cast<double>(splitmix64(splitmix64(seed) ^ (step * 0xd1b54a32d192ed03ull)) >> 11) * 0x1.0p-53;
}

double TokenDistribution::prob(int32_t id) const {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] == id) return weights[i] / total;
  return 0.0;
}

TokenDistribution sampling_distribution(std::span<const float> logits, const SamplingParams& p) {
  if (p.temperature <= 0.0f || logits.size() == 1) return greedy(logits);
  const float max_logit = logits[argmax(logits)];
  if (!std::isfinite(max_logit)) return greedy(logits);  // all NaN, or +inf: no proper distribution
  TokenDistribution d;
  // Unnormalised probabilities relative to the top token (the top token has weight 1).
  std::vector<int32_t>& ids = d.ids;
  std::vector<double> weight(logits.size());
  double total = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    weight[i] = std::isnan(logits[i]) ? 0.0 : std::exp((static_cast<double>(logits[i]) - max_logit) / p.temperature);
    total += weight[i];
    if (weight[i] >= p.min_p) ids.push_back(static_cast<int32_t>(i));
  }
  auto by_weight = [&](int32_t a, int32_t b) { return weight[a] != weight[b] ? weight[a] > weight[b] : a < b; };
  const bool need_order = p.top_k > 0 || p.top_p < 1.0f;
  if (need_order) {
    const size_t k = p.top_k > 0 ? std::min<size_t>(ids.size(), static_cast<size_t>(p.top_k)) : ids.size();
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), by_weight);
    ids.resize(k);
    if (p.top_p < 1.0f) {
      double mass = 0.0;
      size_t keep = 0;
      while (keep < ids.size() && (keep == 0 || mass < p.top_p * total)) mass += weight[ids[keep++]];
      ids.resize(keep);
    }
  }
  d.weights.reserve(ids.size());
  for (int32_t id : ids) {
    d.weights.push_back(weight[id]);
    d.total += weight[id];
  }
  return d;
}

int32_t sample_from(const TokenDistribution& d, double u) {
  double target = u * d.total;
  for (size_t i = 0; i < d.ids.size(); ++i) {
    target -= d.weights[i];
    if (target < 0.0) return d.ids[i];
  }
  return d.ids.back();
}

int32_t sample_token(std::span<const float> logits, const SamplingParams& p, uint64_t step) {
  if (p.temperature <= 0.0f || logits.size() == 1) return argmax(logits);
  return sample_from(sampling_distribution(logits, p), sampling_uniform(p.seed, step));
}

}  // namespace ds4
