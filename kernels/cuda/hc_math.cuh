// Device math shared by the hyper-connection kernels of ops.cu and fused_ops.cu: exp / sigmoid /
// silu evaluated in f64 and rounded to f32 (within an ulp of the CPU's f32 libm calls), and the
// Sinkhorn normalisation of one token's hc × hc mixing matrix (engine/hyper_connection.cpp).
#pragma once

namespace ds4::cuda {

__device__ __forceinline__ float exp_f(float v) { return static_cast<float>(exp(static_cast<double>(v))); }
__device__ __forceinline__ float sigmoid_f(float v) { return 1.0f / (1.0f + exp_f(-v)); }
__device__ __forceinline__ float silu_f(float v) { return v / (1.0f + exp_f(-v)); }

// Sinkhorn on m[a·hc + b] (hyper_connection.cpp sinkhorn), by one thread.
__device__ inline void sinkhorn(float* m, int hc, int iterations, float eps) {
  for (int a = 0; a < hc; ++a) {
    float* row = m + a * hc;
    float mx = row[0];
    for (int b = 1; b < hc; ++b) mx = fmaxf(mx, row[b]);
    float sum = 0.0f;
    for (int b = 0; b < hc; ++b) sum += (row[b] = exp_f(row[b] - mx));
    for (int b = 0; b < hc; ++b) row[b] = row[b] / sum + eps;
  }
  for (int it = 0; it < iterations; ++it) {
    if (it > 0)
      for (int a = 0; a < hc; ++a) {
        float sum = 0.0f;
        for (int b = 0; b < hc; ++b) sum += m[a * hc + b];
        for (int b = 0; b < hc; ++b) m[a * hc + b] /= sum + eps;
      }
    for (int b = 0; b < hc; ++b) {
      float sum = 0.0f;
      for (int a = 0; a < hc; ++a) sum += m[a * hc + b];
      for (int a = 0; a < hc; ++a) m[a * hc + b] /= sum + eps;
    }
  }
}

// coef = {pre[hc], post[hc], comb[hc·hc]} of one token from its mix values (hc_compute_mix).
__device__ inline void hc_coef_from_mix(const float* m, const float* scale, const float* base, int hc, int iterations,
                                        float eps, float* out) {
  for (int i = 0; i < hc; ++i) {
    out[i] = sigmoid_f(m[i] * scale[0] + base[i]) + eps;
    out[hc + i] = 2.0f * sigmoid_f(m[hc + i] * scale[1] + base[hc + i]);
  }
  float* comb = out + 2 * hc;
  for (int i = 0; i < hc * hc; ++i) comb[i] = m[2 * hc + i] * scale[2] + base[2 * hc + i];
  sinkhorn(comb, hc, iterations, eps);
}

}  // namespace ds4::cuda
