// Token sampling (MODEL.md 7): greedy, temperature, top-k, top-p, min-p. The random draw is a
// counter-based function of (seed, step), so a request's samples never depend on what else is in
// the batch or on how its steps were scheduled. Stateless; called by the engine loop and the CLI.
#pragma once
#include <cstdint>
#include <span>

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

// Samples one token id from logits[n_vocab]; `step` is the request's sample counter.
int32_t sample_token(std::span<const float> logits, const SamplingParams& params, uint64_t step);

}  // namespace ds4
