// The hyper-connection boundary of fused_ops.h: hc_boundary (post-mix of the finished sub-layer,
// partial sums of Σh² and the fn products per 512-value chunk) and hc_finish (mix, coefficients,
// Sinkhorn, pre-mix, RMSNorm). Both are latency-bound at decode (one token: 32 blocks, then one),
// so every thread issues all of its global loads before it uses any (one memory round trip
// instead of one per value), the 25 per-thread sums leave the warp by a reduce-scatter
// (reduce.cuh warp_sum_scatter32, warp_sum's tree), and hc_finish runs the Sinkhorn on its own
// warp while eight others do the pre-mix and RMSNorm, which need only the pre coefficients.
// Arithmetic and reduction trees are those of the op chain (ops.cu hc_post / moe_combine, the
// f64 chunk sums, rms_norm's 256-thread tree), so states and coefficients keep their bits.
#include <cuda_fp16.h>

#include <type_traits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/fused_ops.h"
#include "kernels/cuda/hc_math.cuh"
#include "kernels/cuda/reduce.cuh"

namespace ds4::cuda {
namespace {

constexpr int kHcThreads = kHcChunk / 4;           // 4 consecutive flat values per thread
constexpr int kHcMaxHc = 4;                        // (2 + hc)·hc ≤ kHcMaxMix
constexpr int kHcMaxSlots = 8;                     // routed slots a MoE post-mix reads per token
constexpr int kSumSlots = 32;                      // Σh², mix_dim products, zero padding
constexpr int kNormThreads = 256;                  // pre-mix + RMSNorm: rms_norm's reduction tree
constexpr int kFinishThreads = kNormThreads + 32;  // + the coefficient (Sinkhorn) warp
constexpr int kFinishGroups = 4;                   // float4 column groups per norm thread
constexpr int kFinishMaxEmbd = 4 * kNormThreads * kFinishGroups;  // 4096: a row in registers
constexpr int kNormBarrier = 1;                    // named barrier of the norm threads

__device__ __forceinline__ float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ void st4(float* p, const float (&v)[4]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
}
__device__ __forceinline__ float lane4(const float4& v, int j) { return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w; }

// ---- hc_boundary ----

// Sub-layer output y[d..d+3] of token t: given, or Σ slots in order, then + shared (moe_combine).
__device__ __forceinline__ void sublayer_output4(const HcBoundaryParams& p, int64_t t, int64_t d, float (&y)[4]) {
  if (p.y) {
    const float4 v = ld4(p.y + t * p.n_embd + d);
#pragma unroll
    for (int j = 0; j < 4; ++j) y[j] = lane4(v, j);
    return;
  }
  float4 e[kHcMaxSlots];
#pragma unroll
  for (int s = 0; s < kHcMaxSlots; ++s)
    if (s < p.k) e[s] = ld4(p.expert_out + (t * p.k + s) * p.n_embd + d);
  const float4 sh = ld4(p.shared + t * p.n_embd + d);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    float acc = 0.0f;
#pragma unroll
    for (int s = 0; s < kHcMaxSlots; ++s)
      if (s < p.k) acc += lane4(e[s], j);
    y[j] = acc + lane4(sh, j);
  }
}

// New state values of row b, columns d..d+3 (hc_post_kernel's arithmetic).
__device__ __forceinline__ void post_values4(const HcBoundaryParams& p, int64_t t, int b, int64_t d, float (&h)[4]) {
  const int hc = p.hc;
  const int64_t n = p.n_embd;
  float y[4];
  sublayer_output4(p, t, d, y);
  float4 old[kHcMaxHc];
#pragma unroll
  for (int a = 0; a < kHcMaxHc; ++a)
    if (a < hc) old[a] = ld4(p.states + (t * hc + a) * n + d);
  const float* coef = p.prev_coef + t * p.mix_dim;
  const float post = coef[hc + b];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    float v = post * y[j];
#pragma unroll
    for (int a = 0; a < kHcMaxHc; ++a)
      if (a < hc) v += coef[2 * hc + a * hc + b] * lane4(old[a], j);
    h[j] = v;
  }
}

// Four fn weights of one row as stored (F16: 8 bytes, F32: 16 bytes), and as floats.
template <bool kF16>
using FnRaw = std::conditional_t<kF16, uint2, float4>;
template <bool kF16>
__device__ __forceinline__ FnRaw<kF16> fn_raw4(const HcBoundaryParams& p, int o, int64_t k0) {
  const uint8_t* row = p.fn + static_cast<uint64_t>(o) * p.fn_row_bytes;
  return __ldg(reinterpret_cast<const FnRaw<kF16>*>(row + (kF16 ? 2 : 4) * k0));
}
__device__ __forceinline__ void fn_floats4(uint2 v, float (&w)[4]) {
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&v.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&v.y));
  w[0] = a.x, w[1] = a.y, w[2] = b.x, w[3] = b.y;
}
__device__ __forceinline__ void fn_floats4(float4 v, float (&w)[4]) { w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w; }

// This thread's sums over its 4 values: s[0] = Σ h² (f64), s[1 + o] = Σ_j fn[o][k0 + j]·h[j] (f32
// fma chain, then f64); the rest 0.
template <bool kF16>
__device__ __forceinline__ void thread_sums(const FnRaw<kF16> (&raw)[kHcMaxMix], int mix_dim, const float (&h)[4],
                                            double (&s)[kSumSlots]) {
  s[0] = 0.0;
#pragma unroll
  for (int j = 0; j < 4; ++j) s[0] += static_cast<double>(h[j]) * h[j];
#pragma unroll
  for (int o = 0; o < kSumSlots - 1; ++o) {
    float d = 0.0f;
    if (o < kHcMaxMix && o < mix_dim) {
      float w[4];
      fn_floats4(raw[o < kHcMaxMix ? o : 0], w);
#pragma unroll
      for (int j = 0; j < 4; ++j) d = fmaf(w[j], h[j], d);
    }
    s[1 + o] = d;
  }
}

// Grid (chunks, tokens), kHcThreads threads: values k0..k0+3 of the flat state per thread (one
// state row: n_embd % 4 == 0). The fn weights are requested first, then the post-mix inputs.
template <bool kF16>
__global__ void __launch_bounds__(kHcThreads) hc_boundary_kernel(HcBoundaryParams p) {
  __shared__ double warp_part[kHcThreads / 32][kSumSlots];
  const int64_t t = blockIdx.y, n = p.n_embd, hw = p.hc * n;
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kHcChunk + 4 * threadIdx.x;
  const bool active = k0 < hw;  // hw % 4 == 0: all four values or none
  FnRaw<kF16> raw[kHcMaxMix];
  if (p.fn && active) {
#pragma unroll
    for (int o = 0; o < kHcMaxMix; ++o)
      if (o < p.mix_dim) raw[o] = fn_raw4<kF16>(p, o, k0);
  }
  float h[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (active) {
    if (p.prev_coef) {
      post_values4(p, t, static_cast<int>(k0 / n), k0 % n, h);
      st4(p.states_out + t * hw + k0, h);
    } else {
      const float4 v = ld4(p.states + t * hw + k0);
#pragma unroll
      for (int j = 0; j < 4; ++j) h[j] = lane4(v, j);
    }
  }
  if (!p.fn) return;  // post only (uniform over the grid)
  double s[kSumSlots];
  if (active) {
    thread_sums<kF16>(raw, p.mix_dim, h, s);
  } else {
#pragma unroll
    for (int i = 0; i < kSumSlots; ++i) s[i] = 0.0;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  warp_part[warp][lane] = warp_sum_scatter32(s);
  __syncthreads();
  if (threadIdx.x <= p.mix_dim) {
    double sum = 0.0;
    for (int w = 0; w < kHcThreads / 32; ++w) sum += warp_part[w][threadIdx.x];
    const int64_t n_chunks = gridDim.x;
    p.partial[(t * n_chunks + blockIdx.x) * (1 + p.mix_dim) + threadIdx.x] = sum;
  }
}

// ---- hc_finish ----

__device__ __forceinline__ void norm_barrier() { asm volatile("bar.sync %0, %1;" ::"n"(kNormBarrier), "n"(kNormThreads) : "memory"); }

// block_sum over the kNormThreads norm threads only (the same tree as block_sum with 256 threads).
__device__ double norm_threads_sum(double v, double* red) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  v = warp_sum(v);
  if (lane == 0) red[warp] = v;
  norm_barrier();
  if (warp == 0) {
    double s = lane < kNormThreads / 32 ? red[lane] : 0.0;
    s = warp_sum(s);
    if (lane == 0) red[kNormThreads / 32] = s;
  }
  norm_barrier();
  return red[kNormThreads / 32];
}

// Copies count doubles to shared memory with up to 4 loads in flight per thread.
__device__ void stage_doubles(const double* src, int64_t count, double* dst) {
  for (int64_t base = threadIdx.x; base < count; base += 4 * blockDim.x) {
    double v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t i = base + u * blockDim.x;
      v[u] = i < count ? src[i] : 0.0;
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int64_t i = base + u * blockDim.x;
      if (i < count) dst[i] = v[u];
    }
  }
}

// States (hc rows) of this thread's column groups g = threadIdx.x + kNormThreads·i (all of a row:
// n_embd <= kFinishMaxEmbd), loaded before the partial sums are ready.
struct FinishRows {
  float4 st[kFinishGroups][kHcMaxHc];
};
__device__ __forceinline__ void load_rows(const HcFinishParams& p, int64_t t, FinishRows& r) {
  const int64_t n = p.n_embd, groups = n / 4;
#pragma unroll
  for (int i = 0; i < kFinishGroups; ++i) {
    const int64_t g = threadIdx.x + kNormThreads * i;
    if (g >= groups) continue;
#pragma unroll
    for (int s = 0; s < kHcMaxHc; ++s)
      if (s < p.hc) r.st[i][s] = ld4(p.states + (t * p.hc + s) * n + 4 * g);
  }
}

// The norm weights of the same groups (requested before the Σx² reduction).
__device__ __forceinline__ void load_weights(const HcFinishParams& p, float4 (&w)[kFinishGroups]) {
  const int64_t groups = p.n_embd / 4;
#pragma unroll
  for (int i = 0; i < kFinishGroups; ++i) {
    const int64_t g = threadIdx.x + kNormThreads * i;
    if (g < groups && p.norm_weight) w[i] = ld4(p.norm_weight + 4 * g);
  }
}

// The coefficient warp: mix = Σ dot / rms(state), coefficients with the Sinkhorn, written out.
__device__ void finish_coefficients(const HcFinishParams& p, int64_t t, const double* sums) {
  __shared__ float coef[kHcMaxMix];
  const int lane = threadIdx.x & 31;
  const int64_t hw = p.hc * p.n_embd;
  const float inv = static_cast<float>(1.0 / sqrt(sums[0] / static_cast<double>(hw) + static_cast<double>(p.rms_eps)));
  const float mix = lane < p.mix_dim ? static_cast<float>(sums[1 + lane] * static_cast<double>(inv)) : 0.0f;
  hc_coef_warp(mix, p.scale, p.base, p.hc, p.sinkhorn_iters, p.hc_eps, coef);
  if (lane < p.mix_dim) p.coef[t * p.mix_dim + lane] = coef[lane];
}

// x_row[4g..4g+3] = Σ_s pre[s]·state[s] for this thread's groups (hc_pre's order).
__device__ __forceinline__ void pre_mix(const HcFinishParams& p, const float (&pre)[kHcMaxHc], const FinishRows& r,
                                        float* x_row) {
  const int64_t groups = p.n_embd / 4;
#pragma unroll
  for (int i = 0; i < kFinishGroups; ++i) {
    const int64_t g = threadIdx.x + kNormThreads * i;
    if (g >= groups) continue;
    float x[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      x[j] = 0.0f;
#pragma unroll
      for (int s = 0; s < kHcMaxHc; ++s)
        if (s < p.hc) x[j] += pre[s] * lane4(r.st[i][s], j);
    }
    st4(x_row + 4 * g, x);
  }
}

// normed = x_row · inv (· weight) for this thread's groups.
__device__ __forceinline__ void normalize(const HcFinishParams& p, int64_t t, float inv, const float4 (&w)[kFinishGroups],
                                          const float* x_row) {
  const int64_t groups = p.n_embd / 4;
#pragma unroll
  for (int i = 0; i < kFinishGroups; ++i) {
    const int64_t g = threadIdx.x + kNormThreads * i;
    if (g >= groups) continue;
    const float4 x = ld4(x_row + 4 * g);
    float out[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float v = lane4(x, j) * inv;
      out[j] = p.norm_weight ? v * lane4(w[i], j) : v;
    }
    st4(p.normed + t * p.n_embd + 4 * g, out);
  }
}

// One block per token: all threads stage the chunk partials, warp 0 sums them per value in chunk
// order; then the last warp computes the coefficients while the kNormThreads others (states
// already loaded) do pre-mix → Σx² (rms_norm's tree over x_row) → normed.
// Two blocks per multiprocessor (<= 113 registers): at a 2048-token chunk one block per SM left the
// SMs waiting on each block's Sinkhorn warp.
__global__ void __launch_bounds__(kFinishThreads, 2) hc_finish_kernel(HcFinishParams p, int64_t n_chunks) {
  extern __shared__ float4 finish_smem[];
  float* x_row = reinterpret_cast<float*>(finish_smem);              // [n_embd]
  double* part = reinterpret_cast<double*>(x_row + p.n_embd);        // [n_chunks · (1 + mix_dim)]
  __shared__ double sums[1 + kHcMaxMix];
  __shared__ double red[kNormThreads / 32 + 1];
  const int64_t t = blockIdx.x, n = p.n_embd;
  const int stride = 1 + p.mix_dim;
  const bool norm_thread = threadIdx.x < kNormThreads;
  FinishRows rows;
  if (norm_thread) load_rows(p, t, rows);
  stage_doubles(p.partial + t * n_chunks * stride, n_chunks * stride, part);
  __syncthreads();
  if (threadIdx.x < stride) {
    double s = 0.0;
    for (int64_t c = 0; c < n_chunks; ++c) s += part[c * stride + threadIdx.x];
    sums[threadIdx.x] = s;
  }
  __syncthreads();
  if (!norm_thread) {
    finish_coefficients(p, t, sums);
    return;
  }
  const float inv_h = static_cast<float>(1.0 / sqrt(sums[0] / static_cast<double>(p.hc * n) + static_cast<double>(p.rms_eps)));
  float pre[kHcMaxHc];
#pragma unroll
  for (int s = 0; s < kHcMaxHc; ++s)
    pre[s] = s < p.hc ? hc_pre_coef(static_cast<float>(sums[1 + s] * static_cast<double>(inv_h)), p.scale, p.base, s, p.hc_eps) : 0.0f;
  pre_mix(p, pre, rows, x_row);
  float4 w[kFinishGroups];
  load_weights(p, w);
  norm_barrier();
  double sum = 0.0;
  for (int64_t d = threadIdx.x; d < n; d += kNormThreads) sum += static_cast<double>(x_row[d]) * x_row[d];
  sum = norm_threads_sum(sum, red);
  const float inv = static_cast<float>(1.0 / sqrt(sum / static_cast<double>(n) + static_cast<double>(p.rms_eps)));
  normalize(p, t, inv, w, x_row);
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

int64_t hc_boundary_chunks(int64_t hc_width) { return (hc_width + kHcChunk - 1) / kHcChunk; }

void hc_boundary(const HcBoundaryParams& p, cudaStream_t stream) {
  const char* k = "cuda::hc_boundary";
  DS4_LAUNCH_REQUIRE(p.hc > 0 && p.n_embd > 0 && p.n_embd % 4 == 0 && p.mix_dim == (2 + p.hc) * p.hc && p.mix_dim <= kHcMaxMix,
                     k, "needs (2 + hc)·hc <= 24 mix values and n_embd % 4 == 0");
  DS4_LAUNCH_REQUIRE(p.states && (p.prev_coef || p.fn), k, "nothing to do: neither post nor mix");
  DS4_LAUNCH_REQUIRE(!p.prev_coef || (p.states_out && p.states_out != p.states && (p.y || (p.expert_out && p.shared && p.k > 0))),
                     k, "post needs an output state buffer (not the input) and y or the expert outputs");
  DS4_LAUNCH_REQUIRE(!p.prev_coef || p.y || p.k <= kHcMaxSlots, k, "at most 8 routed slots");
  DS4_LAUNCH_REQUIRE(!p.fn || ((p.fn_type == GgmlType::F16 || p.fn_type == GgmlType::F32) && p.partial), k,
                     "fn must be F16 or F32, with a partial buffer");
  DS4_LAUNCH_REQUIRE(!p.fn || (aligned16(p.fn) && p.fn_row_bytes % 16 == 0), k, "fn rows must be 16-byte aligned");
  DS4_LAUNCH_REQUIRE(aligned16(p.states) && aligned16(p.states_out) && aligned16(p.y) && aligned16(p.expert_out) &&
                         aligned16(p.shared),
                     k, "state and output buffers must be 16-byte aligned");
  if (p.n_tokens == 0) return;
  const dim3 grid(static_cast<unsigned>(hc_boundary_chunks(p.hc * p.n_embd)), static_cast<unsigned>(p.n_tokens));
  if (!p.fn || p.fn_type == GgmlType::F16) hc_boundary_kernel<true><<<grid, kHcThreads, 0, stream>>>(p);
  else hc_boundary_kernel<false><<<grid, kHcThreads, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("hc_boundary_kernel");
}

void hc_finish(const HcFinishParams& p, cudaStream_t stream) {
  const char* k = "cuda::hc_finish";
  DS4_LAUNCH_REQUIRE(p.hc > 0 && p.n_embd > 0 && p.n_embd % 4 == 0 && p.n_embd <= kFinishMaxEmbd &&
                         p.mix_dim == (2 + p.hc) * p.hc && p.mix_dim <= kHcMaxMix && p.sinkhorn_iters >= 1,
                     k, "bad shape (n_embd % 4 == 0 and <= 4096, (2 + hc)·hc <= 24)");
  DS4_LAUNCH_REQUIRE(p.partial && p.states && p.scale && p.base && p.coef && p.normed, k, "null pointer");
  DS4_LAUNCH_REQUIRE(aligned16(p.states) && aligned16(p.normed) && aligned16(p.norm_weight), k,
                     "states, normed and norm weight must be 16-byte aligned");
  const int64_t n_chunks = hc_boundary_chunks(p.hc * p.n_embd);
  const size_t smem = sizeof(float) * p.n_embd + sizeof(double) * n_chunks * (1 + p.mix_dim);
  DS4_LAUNCH_REQUIRE(smem <= 48 * 1024, k, "too many chunk partials for shared memory");
  if (p.n_tokens == 0) return;
  hc_finish_kernel<<<static_cast<unsigned>(p.n_tokens), kFinishThreads, smem, stream>>>(p, n_chunks);
  DS4_CUDA_LAUNCH_CHECK("hc_finish_kernel");
}

}  // namespace ds4::cuda
