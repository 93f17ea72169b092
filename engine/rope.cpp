// RoPE frequencies (with YaRN for compressed layers) and the tail rotation (see rope.h).
#include "engine/rope.h"

#include <algorithm>
#include <cmath>

namespace ds4 {
namespace {

// YaRN correction dimension for a rotation count beta (ggml/ds4 convention over n_dims).
double yarn_corr_dim(int n_dims, int orig_ctx, double beta, double base) {
  return n_dims * std::log(orig_ctx / (beta * 2.0 * M_PI)) / (2.0 * std::log(base));
}

}  // namespace

RopeFrequencies rope_frequencies(const ModelConfig& c, bool compressed_layer) {
  const int n_dims = c.rope_dim;
  const int n_pairs = n_dims / 2;
  const double base = compressed_layer ? c.compress_rope_base : c.rope_base;
  RopeFrequencies f;
  f.freq.resize(n_pairs);
  const double lo = std::max(0.0, std::floor(yarn_corr_dim(n_dims, c.yarn_orig_ctx, c.yarn_beta_fast, base)));
  const double hi = std::min(double(n_dims - 1), std::ceil(yarn_corr_dim(n_dims, c.yarn_orig_ctx, c.yarn_beta_slow, base)));
  for (int j = 0; j < n_pairs; ++j) {
    const double extrap = std::pow(base, -2.0 * j / n_dims);
    if (!compressed_layer || c.yarn_factor <= 1.0f) {
      f.freq[j] = extrap;
      continue;
    }
    const double ramp = 1.0 - std::clamp((j - lo) / std::max(0.001, hi - lo), 0.0, 1.0);
    f.freq[j] = extrap / c.yarn_factor * (1.0 - ramp) + extrap * ramp;
  }
  return f;
}

void apply_rope_tail(float* v, int width, const RopeFrequencies& f, int64_t pos, bool inverse) {
  const int n_pairs = static_cast<int>(f.freq.size());
  float* tail = v + width - 2 * n_pairs;
  for (int j = 0; j < n_pairs; ++j) {
    const double angle = static_cast<double>(pos) * f.freq[j];
    const float c = static_cast<float>(std::cos(angle));
    const float s = static_cast<float>(inverse ? -std::sin(angle) : std::sin(angle));
    const float x0 = tail[2 * j], x1 = tail[2 * j + 1];
    tail[2 * j] = x0 * c - x1 * s;
    tail[2 * j + 1] = x0 * s + x1 * c;
  }
}

}  // namespace ds4
