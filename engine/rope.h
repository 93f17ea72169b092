// Partial RoPE of MODEL.md 1.6: only the last rope_dim values of a head rotate, in interleaved
// pairs (x[2j], x[2j+1]). Plain layers use rope_base; compressed layers use compress_rope_base
// with YaRN (frequency blend by ramp, magnitude factor cancelled). Angles are position · freq[j].
#pragma once
#include <cstdint>
#include <vector>

#include "engine/model_config.h"

namespace ds4 {

struct RopeFrequencies {
  std::vector<double> freq;  // [rope_dim / 2] radians per position for pair j
};

RopeFrequencies rope_frequencies(const ModelConfig& config, bool compressed_layer);

// Rotates the tail rope_dim values of v[0..width) by +θ (or −θ when inverse) at position pos.
void apply_rope_tail(float* v, int width, const RopeFrequencies& f, int64_t pos, bool inverse);

}  // namespace ds4
