// CPU reference ops of the forward pass: matrix multiplication against quantised weights, RMSNorm,
// activation functions. Plain f32 math (f64 where a reduction needs it), threaded over output
// rows. These define the numerics every fast path is compared with.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/ggml_type.h"
#include "kernels/thread_pool.h"

namespace ds4 {

// A weight matrix of n_out rows, each n_in values stored as `type` (GGUF [n_in, n_out]).
struct MatView {
  const uint8_t* data = nullptr;
  GgmlType type = GgmlType::F32;
  int64_t n_in = 0;
  int64_t n_out = 0;
  uint64_t row_bytes = 0;
  const uint8_t* row(int64_t i) const { return data + static_cast<uint64_t>(i) * row_bytes; }
  // Rows [first, first + count) as a matrix of their own.
  MatView rows(int64_t first, int64_t count) const {
    MatView m = *this;
    m.data = row(first);
    m.n_out = count;
    return m;
  }
};

// y[t, o] = Σ_i W[o, i] · x[t, i] for t < n_tokens; x is [n_tokens, n_in], y is [n_tokens, n_out]
// (row-major, contiguous). Each weight row is read once for all tokens.
void matmul(const MatView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool);

// out = x · w / sqrt(mean(x²) + eps); w may be null (no weight). out may alias x.
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out);

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
// softplus with the thresholds of MODEL.md 1.5: x above 20, e^x below -20.
inline float softplus(float x) {
  if (x > 20.0f) return x;
  if (x < -20.0f) return std::exp(x);
  return std::log1p(std::exp(x));
}

}  // namespace ds4
