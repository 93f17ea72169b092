// Device math shared by the hyper-connection kernels of ops.cu and hc_fused.cu: exp / sigmoid /
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

// pre[i] of hc_coef_from_mix (also computed apart from the Sinkhorn warp by hc_finish).
__device__ __forceinline__ float hc_pre_coef(float mix, const float* scale, const float* base, int i, float eps) {
  return sigmoid_f(mix * scale[0] + base[i]) + eps;
}

// The same coefficients computed by one warp (hc ≤ 4): lane i < hc² owns comb[i] and gathers its
// row and column through shuffles, summing them in the serial order above, so the results equal
// hc_coef_from_mix bit for bit while the 20 Sinkhorn rounds run as 40 short dependent steps
// instead of 640 (a single thread's chain took ~60 µs on the H200). kHc > 0 fixes hc at compile
// time (unrolled row / column loops, same arithmetic); 0 reads it from hc_rt.
template <int kHc>
__device__ inline void hc_coef_warp_impl(float mix_lane, const float* scale, const float* base, int hc_rt, int iterations,
                                         float eps, float* coef) {
  const unsigned full = 0xffffffffu;
  const int hc = kHc > 0 ? kHc : hc_rt;
  const int lane = threadIdx.x & 31, n_comb = hc * hc;
  if (lane < hc) coef[lane] = hc_pre_coef(mix_lane, scale, base, lane, eps);
  else if (lane < 2 * hc) coef[lane] = 2.0f * sigmoid_f(mix_lane * scale[1] + base[lane]);
  const float raw = __shfl_sync(full, mix_lane, (2 * hc + lane) & 31);
  const bool owner = lane < n_comb;
  const int a = owner ? lane / hc : 0, b = owner ? lane % hc : 0;
  float v = owner ? raw * scale[2] + base[2 * hc + lane] : 0.0f;
  auto row_sum = [&](float x, bool exp_shift) {  // Σ_j of row a (exp(x − max) first when exp_shift)
    float r[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) r[j] = __shfl_sync(full, x, (a * hc + (j < hc ? j : 0)) & 31);
    if (exp_shift) {
      float mx = r[0];
#pragma unroll
      for (int j = 1; j < 4; ++j)
        if (j < hc) mx = fmaxf(mx, r[j]);
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (j < hc) r[j] = exp_f(r[j] - mx);
    }
    float sum = 0.0f, rb = r[0];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j < hc) sum += r[j];
      if (j == b) rb = r[j];  // r[b] without a local-memory array
    }
    return exp_shift ? rb / sum + eps : x / (sum + eps);
  };
  auto col_step = [&](float x) {
    float c[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) c[j] = __shfl_sync(full, x, ((j < hc ? j : 0) * hc + b) & 31);
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (j < hc) sum += c[j];
    return x / (sum + eps);
  };
  v = row_sum(v, true);
  for (int it = 0; it < iterations; ++it) {
    if (it > 0) v = row_sum(v, false);
    v = col_step(v);
  }
  if (owner) coef[2 * hc + lane] = v;
  __syncwarp();
}

// Every lane of the warp must call it; mix_lane = mix[lane] (lanes < (2 + hc)·hc); coef receives
// all (2 + hc)·hc values.
__device__ inline void hc_coef_warp(float mix_lane, const float* scale, const float* base, int hc, int iterations, float eps,
                                    float* coef) {
  if (hc == 4) hc_coef_warp_impl<4>(mix_lane, scale, base, hc, iterations, eps, coef);
  else hc_coef_warp_impl<0>(mix_lane, scale, base, hc, iterations, eps, coef);
}

}  // namespace ds4::cuda
