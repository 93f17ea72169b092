// Log-probabilities of a sampled token and its most likely alternatives, from one logits row
// (the model's raw distribution: softmax without temperature or filters, as OpenAI reports them).
// Called by the engine loop for requests that ask for logprobs; stateless.
#pragma once
#include <cstdint>
#include <span>

#include "scheduler/engine_api.h"

namespace ds4 {

// logits: [n_vocab]; top: 0..kMaxTopLogprobs alternatives, most likely first (ties: lower id first).
SampledLogprobs compute_logprobs(std::span<const float> logits, int32_t token, int top);

}  // namespace ds4
