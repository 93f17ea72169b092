// Token sampling (MODEL.md 7): greedy, temperature, top-k, top-p, min-p. The random draw is a
// counter-based function of (seed, step), so a request's samples never depend on what else is in
// the batch or on how its steps were scheduled. Stateless; called by the engine loop and the CLI.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace ds4 {

struct SamplingParams {
  float temperature = 1.0f;  // <= 0: greedy (first maximum)
  float top_p = 1.0f;        // (0, 1]
  float min_p = 0.0f;        // [0, 1]: keep tokens with p >= min_p * p_max
  int top_k = 0;             // 0: off
  uint64_t seed = 0;
};

// Uniform in [0, 1) for draw `step` of a request seeded with `seed`.
double sampling_uniform(uint64_t seed, uint64_t step);

// The distribution sample_token draws from: the kept candidates in draw order with unnormalised
// weights (probability = weight / total). Greedy: the first maximum alone, weight 1. Speculative
// decoding (engine/speculative.h) verifies drafts against exactly this distribution.
struct TokenDistribution {
  std::vector<int32_t> ids;
  std::vector<double> weights;  // parallel to ids, > 0
  double total = 0.0;           // sum of weights, summed in draw order
  // Probability of id (0 when it is not a candidate).
  double prob(int32_t id) const;
};
TokenDistribution sampling_distribution(std::span<const float> logits, const SamplingParams& params);
// Inverse-CDF draw over the candidates in draw order, u in [0, 1).
int32_t sample_from(const TokenDistribution& distribution, double u);

// Samples one token id from logits[n_vocab]; `step` is the request's sample counter.
// Equal to sample_from(sampling_distribution(logits, params), sampling_uniform(params.seed, step)).
int32_t sample_token(std::span<const float> logits, const SamplingParams& params, uint64_t step);

}  // namespace ds4
