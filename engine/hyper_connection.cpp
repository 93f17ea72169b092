// Hyper-connection mixing, Sinkhorn normalisation and head collapse (see hyper_connection.h).
#include "engine/hyper_connection.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu_ops.h"

namespace ds4 {
namespace {

// Normalised flattened states: RMSNorm without weight over all hc * n_embd values of each token.
std::vector<float> normalized_flat(const ModelConfig& c, const float* states, int64_t n_tokens) {
  const int64_t width = int64_t(c.hc_count) * c.n_embd;
  std::vector<float> flat(static_cast<size_t>(n_tokens * width));
  for (int64_t t = 0; t < n_tokens; ++t) rms_norm(states + t * width, nullptr, width, c.rms_eps, flat.data() + t * width);
  return flat;
}

// Sinkhorn on comb[a * hc + b]: softmax over each row, then alternate column and row normalisation.
void sinkhorn(float* m, int hc, int iterations, float eps) {
  for (int a = 0; a < hc; ++a) {
    float* row = m + a * hc;
    const float mx = *std::max_element(row, row + hc);
    float sum = 0.0f;
    for (int b = 0; b < hc; ++b) sum += (row[b] = std::exp(row[b] - mx));
    for (int b = 0; b < hc; ++b) row[b] = row[b] / sum + eps;
  }
  auto normalize_columns = [&] {
    for (int b = 0; b < hc; ++b) {
      float sum = 0.0f;
      for (int a = 0; a < hc; ++a) sum += m[a * hc + b];
      for (int a = 0; a < hc; ++a) m[a * hc + b] /= sum + eps;
    }
  };
  normalize_columns();
  for (int it = 1; it < iterations; ++it) {
    for (int a = 0; a < hc; ++a) {
      float sum = 0.0f;
      for (int b = 0; b < hc; ++b) sum += m[a * hc + b];
      for (int b = 0; b < hc; ++b) m[a * hc + b] /= sum + eps;
    }
    normalize_columns();
  }
}

}  // namespace

std::vector<HcMix> hc_compute_mix(const ModelConfig& c, const TensorView& fn, const TensorView& scale,
                                  const TensorView& base, const float* states, int64_t n_tokens, ThreadPool& pool) {
  const int hc = c.hc_count, n_mix = c.hc_mix_dim();
  const std::vector<float> flat = normalized_flat(c, states, n_tokens);
  std::vector<float> mix(static_cast<size_t>(n_tokens * n_mix));
  matmul(fn.mat(), flat.data(), n_tokens, mix.data(), pool);
  const float* s = scale.f32();
  const float* b = base.f32();
  std::vector<HcMix> out(n_tokens);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* m = mix.data() + t * n_mix;
    HcMix& r = out[t];
    for (int i = 0; i < hc; ++i) {
      r.pre[i] = sigmoid(m[i] * s[0] + b[i]) + c.hc_eps;
      r.post[i] = 2.0f * sigmoid(m[hc + i] * s[1] + b[hc + i]);
    }
    for (int i = 0; i < hc * hc; ++i) r.comb[i] = m[2 * hc + i] * s[2] + b[2 * hc + i];
    sinkhorn(r.comb, hc, c.hc_sinkhorn_iters, c.hc_eps);
  }
  return out;
}

void hc_pre(const ModelConfig& c, const HcMix& mix, const float* state, float* x) {
  const int64_t n = c.n_embd;
  for (int64_t d = 0; d < n; ++d) x[d] = 0.0f;
  for (int s = 0; s < c.hc_count; ++s)
    for (int64_t d = 0; d < n; ++d) x[d] += mix.pre[s] * state[s * n + d];
}

void hc_post(const ModelConfig& c, const HcMix& mix, const float* y, float* state) {
  const int hc = c.hc_count;
  const int64_t n = c.n_embd;
  std::vector<float> old(state, state + hc * n);
  for (int b = 0; b < hc; ++b) {
    float* dst = state + b * n;
    for (int64_t d = 0; d < n; ++d) {
      float v = mix.post[b] * y[d];
      for (int a = 0; a < hc; ++a) v += mix.comb[a * hc + b] * old[a * n + d];
      dst[d] = v;
    }
  }
}

void hc_collapse(const ModelConfig& c, const TensorView& fn, const TensorView& scale, const TensorView& base,
                 const float* states, int64_t n_tokens, float* out, ThreadPool& pool) {
  const int hc = c.hc_count;
  const int64_t n = c.n_embd;
  const std::vector<float> flat = normalized_flat(c, states, n_tokens);
  std::vector<float> mix(static_cast<size_t>(n_tokens * hc));
  matmul(fn.mat(), flat.data(), n_tokens, mix.data(), pool);
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* h = out + t * n;
    std::fill(h, h + n, 0.0f);
    for (int i = 0; i < hc; ++i) {
      const float wi = sigmoid(mix[t * hc + i] * scale.f32()[0] + base.f32()[i]) + c.hc_eps;
      const float* src = states + t * hc * n + i * n;
      for (int64_t d = 0; d < n; ++d) h[d] += wi * src[d];
    }
  }
}

}  // namespace ds4
