// Fused kernels of fused_ops.h. Where a kernel replaces a chain, each stage keeps the chain's
// arithmetic and its reduction tree (256-thread f64 block sums for the norms, f64 sincos for
// RoPE, the qat.cuh round trips), so the outputs equal the chain's bit for bit; the one
// exception is the hyper-connection mix, reduced in f64 over chunks and scaled by 1/rms at the
// end (mathematically the chain's fn · RMSNorm(state), within the matmul tolerance). Sinkhorn runs
// on one warp (hc_math.cuh hc_coef_warp, same arithmetic as the one-thread version).
#include "kernels/cuda/fused_ops.h"

#include <cuda_fp16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/hc_math.cuh"
#include "kernels/cuda/qat.cuh"
#include "kernels/cuda/quant_decode.cuh"
#include "kernels/cuda/reduce.cuh"

namespace ds4::cuda {
namespace {

constexpr int kHcThreads = kHcChunk / 4;  // 4 consecutive flat values per thread
constexpr int kRowThreads = 256;          // the norms' block size in ops.cu (same reduction tree)

// y[d] of the sub-layer output: given, or the MoE combine (Σ slots in order, then + shared).
__device__ __forceinline__ float sublayer_output(const HcBoundaryParams& p, int64_t t, int64_t d) {
  if (p.y) return p.y[t * p.n_embd + d];
  float y = 0.0f;
  for (int s = 0; s < p.k; ++s) y += p.expert_out[(t * p.k + s) * p.n_embd + d];
  return y + p.shared[t * p.n_embd + d];
}

// State value k (= b·n + d) after the post-mix of hc_post_kernel.
__device__ __forceinline__ float post_value(const HcBoundaryParams& p, int64_t t, int64_t k) {
  const int hc = p.hc;
  const int64_t n = p.n_embd, b = k / n, d = k % n;
  const float* coef = p.prev_coef + t * p.mix_dim;
  const float* h = p.states + t * hc * n + d;
  float v = coef[hc + b] * sublayer_output(p, t, d);
  for (int a = 0; a < hc; ++a) v += coef[2 * hc + a * hc + b] * h[a * n];
  return v;
}

__device__ __forceinline__ float fn_weight(const HcBoundaryParams& p, int o, int64_t k) {
  const uint8_t* row = p.fn + static_cast<uint64_t>(o) * p.fn_row_bytes;
  return p.fn_type == GgmlType::F16 ? half_bits_to_float(ld_u16(row + 2 * k)) : __uint_as_float(ld_u32(row + 4 * k));
}

// Weights k0..k0+3 of row o (k0 a multiple of 4; rows are 8-byte aligned for F16, 16 for F32).
__device__ __forceinline__ void fn_weights4(const HcBoundaryParams& p, int o, int64_t k0, float* w) {
  const uint8_t* row = p.fn + static_cast<uint64_t>(o) * p.fn_row_bytes;
  if (p.fn_type == GgmlType::F16) {
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(row + 2 * k0));
    const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&v.x));
    const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&v.y));
    w[0] = a.x, w[1] = a.y, w[2] = b.x, w[3] = b.y;
  } else {
    const float4 v = __ldg(reinterpret_cast<const float4*>(row + 4 * k0));
    w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
  }
}

__global__ void __launch_bounds__(kHcThreads) hc_boundary_kernel(HcBoundaryParams p) {
  __shared__ double warp_part[kHcThreads / 32][1 + kHcMaxMix];
  const int64_t t = blockIdx.y, hw = p.hc * p.n_embd;
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kHcChunk + 4 * threadIdx.x;
  float h[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t k = k0 + j;
    h[j] = 0.0f;
    if (k >= hw) continue;
    if (p.prev_coef) {
      h[j] = post_value(p, t, k);
      p.states_out[t * hw + k] = h[j];
    } else {
      h[j] = p.states[t * hw + k];
    }
  }
  if (!p.fn) return;  // post only (uniform over the grid)
  double acc[1 + kHcMaxMix];
  acc[0] = 0.0;
#pragma unroll
  for (int j = 0; j < 4; ++j) acc[0] += static_cast<double>(h[j]) * h[j];
  const bool whole = k0 + 3 < hw;  // 4 weights per row in one 8-byte (F16) or 16-byte (F32) load
#pragma unroll
  for (int o = 0; o < kHcMaxMix; ++o) {
    float d = 0.0f;
    if (o < p.mix_dim) {
      float w[4];
      if (whole) {
        fn_weights4(p, o, k0, w);
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) w[j] = k0 + j < hw ? fn_weight(p, o, k0 + j) : 0.0f;
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) d = fmaf(w[j], h[j], d);
    }
    acc[1 + o] = d;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
#pragma unroll
  for (int i = 0; i < 1 + kHcMaxMix; ++i) {
    const double s = warp_sum(acc[i]);
    if (lane == 0) warp_part[warp][i] = s;
  }
  __syncthreads();
  if (threadIdx.x <= p.mix_dim) {
    double s = 0.0;
    for (int w = 0; w < kHcThreads / 32; ++w) s += warp_part[w][threadIdx.x];
    const int64_t n_chunks = gridDim.x;
    p.partial[(t * n_chunks + blockIdx.x) * (1 + p.mix_dim) + threadIdx.x] = s;
  }
}

__global__ void __launch_bounds__(kRowThreads) hc_finish_kernel(HcFinishParams p, int64_t n_chunks) {
  extern __shared__ float x_row[];  // [n_embd]
  __shared__ double sums[1 + kHcMaxMix];
  __shared__ float coef[kHcMaxMix];
  const int64_t t = blockIdx.x, n = p.n_embd, hw = p.hc * n;
  const int stride = 1 + p.mix_dim;
  if (threadIdx.x < stride) {
    const double* part = p.partial + t * n_chunks * stride + threadIdx.x;
    double s = 0.0;
    for (int64_t c = 0; c < n_chunks; ++c) s += part[c * stride];
    sums[threadIdx.x] = s;
  }
  __syncthreads();
  if (threadIdx.x < 32) {  // warp 0: mix = Σ dot / rms, then the coefficients (Sinkhorn by 16 lanes)
    const int lane = threadIdx.x;
    const float inv = static_cast<float>(1.0 / sqrt(sums[0] / static_cast<double>(hw) + static_cast<double>(p.rms_eps)));
    const float mix = lane < p.mix_dim ? static_cast<float>(sums[1 + lane] * static_cast<double>(inv)) : 0.0f;
    hc_coef_warp(mix, p.scale, p.base, p.hc, p.sinkhorn_iters, p.hc_eps, coef);
    if (lane < p.mix_dim) p.coef[t * p.mix_dim + lane] = coef[lane];
  }
  __syncthreads();
  const float* st = p.states + t * hw;
  double sum = 0.0;
  for (int64_t d = threadIdx.x; d < n; d += blockDim.x) {
    float x = 0.0f;
    for (int s = 0; s < p.hc; ++s) x += coef[s] * st[s * n + d];
    x_row[d] = x;
    sum += static_cast<double>(x) * x;
  }
  sum = block_sum(sum);
  const float inv = static_cast<float>(1.0 / sqrt(sum / static_cast<double>(n) + static_cast<double>(p.rms_eps)));
  for (int64_t d = threadIdx.x; d < n; d += blockDim.x) {
    const float v = x_row[d] * inv;
    p.normed[t * n + d] = p.norm_weight ? v * p.norm_weight[d] : v;
  }
}

// RMSNorm of row[0..width) in shared memory (ops.cu rms_norm_kernel's tree), weight optional.
__device__ void norm_row_smem(float* row, int width, const float* weight, float eps) {
  double sum = 0.0;
  for (int i = threadIdx.x; i < width; i += blockDim.x) sum += static_cast<double>(row[i]) * row[i];
  sum = block_sum(sum);
  const float inv = static_cast<float>(1.0 / sqrt(sum / static_cast<double>(width) + static_cast<double>(eps)));
  for (int i = threadIdx.x; i < width; i += blockDim.x) {
    const float v = row[i] * inv;
    row[i] = weight ? v * weight[i] : v;
  }
  __syncthreads();
}

// RoPE of the tail 2·n_pairs values of row[0..width) in shared memory (ops.cu rope_kernel).
__device__ void rope_row_smem(float* row, int width, int32_t pos, const double* freq, int n_pairs) {
  float* tail = row + width - 2 * n_pairs;
  for (int j = threadIdx.x; j < n_pairs; j += blockDim.x) {
    double s, c;
    sincos(static_cast<double>(pos) * freq[j], &s, &c);
    const float cf = static_cast<float>(c), sf = static_cast<float>(s);
    const float x0 = tail[2 * j], x1 = tail[2 * j + 1];
    tail[2 * j] = x0 * cf - x1 * sf;
    tail[2 * j + 1] = x0 * sf + x1 * cf;
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kRowThreads) q_heads_norm_rope_kernel(HeadNormRopeParams p) {
  extern __shared__ float q_row[];
  const int64_t r = blockIdx.x, t = r / p.heads;
  float* x = p.x + r * p.head_dim;
  for (int i = threadIdx.x; i < p.head_dim; i += blockDim.x) q_row[i] = x[i];
  __syncthreads();
  norm_row_smem(q_row, p.head_dim, nullptr, p.eps);
  rope_row_smem(q_row, p.head_dim, p.pos[t], p.freq, p.n_pairs);
  for (int i = threadIdx.x; i < p.head_dim; i += blockDim.x) x[i] = q_row[i];
}

__global__ void __launch_bounds__(kRowThreads) kv_norm_rope_quant_kernel(KvRowParams p) {
  extern __shared__ float kv_row[];
  const int64_t t = blockIdx.x;
  for (int i = threadIdx.x; i < p.head_dim; i += blockDim.x) kv_row[i] = p.kv[t * p.head_dim + i];
  __syncthreads();
  norm_row_smem(kv_row, p.head_dim, p.weight, p.eps);
  rope_row_smem(kv_row, p.head_dim, p.pos[t], p.freq, p.n_pairs);
  float* dst = p.rawq + t * p.head_dim;
  if (p.quantize) {
    for (int blk = threadIdx.x; blk < p.nope_dim / 64; blk += blockDim.x) fp8_block_round_trip(kv_row + 64 * blk);
    __syncthreads();
    for (int i = threadIdx.x; i < p.head_dim; i += blockDim.x) dst[i] = __half2float(__float2half_rn(kv_row[i]));
  } else {
    for (int i = threadIdx.x; i < p.head_dim; i += blockDim.x) dst[i] = kv_row[i];
  }
}

__global__ void indexer_q_rope_qat_kernel(IndexerQParams p) {
  extern __shared__ float iq_row[];
  const int64_t r = blockIdx.x, t = r / p.heads;
  float* x = p.q + r * p.dim;
  for (int i = threadIdx.x; i < p.dim; i += blockDim.x) iq_row[i] = x[i];
  __syncthreads();
  rope_row_smem(iq_row, p.dim, p.pos[t], p.freq, p.n_pairs);
  if (p.quantize) hadamard_fp4_block(iq_row, p.dim);
  for (int i = threadIdx.x; i < p.dim; i += blockDim.x) x[i] = iq_row[i];
}

}  // namespace

int64_t hc_boundary_chunks(int64_t hc_width) { return (hc_width + kHcChunk - 1) / kHcChunk; }

void hc_boundary(const HcBoundaryParams& p, cudaStream_t stream) {
  const char* k = "cuda::hc_boundary";
  DS4_LAUNCH_REQUIRE(p.hc > 0 && p.n_embd > 0 && p.mix_dim == (2 + p.hc) * p.hc && p.mix_dim <= kHcMaxMix, k,
                     "needs (2 + hc)·hc <= 24 mix values");
  DS4_LAUNCH_REQUIRE(p.states && (p.prev_coef || p.fn), k, "nothing to do: neither post nor mix");
  DS4_LAUNCH_REQUIRE(!p.prev_coef || (p.states_out && p.states_out != p.states && (p.y || (p.expert_out && p.shared && p.k > 0))),
                     k, "post needs an output state buffer (not the input) and y or the expert outputs");
  DS4_LAUNCH_REQUIRE(!p.fn || ((p.fn_type == GgmlType::F16 || p.fn_type == GgmlType::F32) && p.partial), k,
                     "fn must be F16 or F32, with a partial buffer");
  DS4_LAUNCH_REQUIRE(!p.fn || (reinterpret_cast<uintptr_t>(p.fn) % 16 == 0 && p.fn_row_bytes % 16 == 0), k,
                     "fn rows must be 16-byte aligned");
  if (p.n_tokens == 0) return;
  const dim3 grid(static_cast<unsigned>(hc_boundary_chunks(p.hc * p.n_embd)), static_cast<unsigned>(p.n_tokens));
  hc_boundary_kernel<<<grid, kHcThreads, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("hc_boundary_kernel");
}

void hc_finish(const HcFinishParams& p, cudaStream_t stream) {
  const char* k = "cuda::hc_finish";
  DS4_LAUNCH_REQUIRE(p.hc > 0 && p.n_embd > 0 && p.mix_dim == (2 + p.hc) * p.hc && p.mix_dim <= kHcMaxMix &&
                         p.sinkhorn_iters >= 1,
                     k, "bad shape");
  DS4_LAUNCH_REQUIRE(p.partial && p.states && p.scale && p.base && p.coef && p.normed, k, "null pointer");
  DS4_LAUNCH_REQUIRE(p.n_embd * sizeof(float) <= 48 * 1024, k, "n_embd too large for one block's row");
  if (p.n_tokens == 0) return;
  hc_finish_kernel<<<static_cast<unsigned>(p.n_tokens), kRowThreads, sizeof(float) * p.n_embd, stream>>>(
      p, hc_boundary_chunks(p.hc * p.n_embd));
  DS4_CUDA_LAUNCH_CHECK("hc_finish_kernel");
}

void q_heads_norm_rope(const HeadNormRopeParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.heads > 0 && p.head_dim > 0 && p.n_pairs > 0 && 2 * p.n_pairs <= p.head_dim, "cuda::q_heads_norm_rope",
                     "bad shape");
  if (p.n_tokens == 0) return;
  DS4_LAUNCH_REQUIRE(p.x && p.pos && p.freq, "cuda::q_heads_norm_rope", "null pointer");
  q_heads_norm_rope_kernel<<<static_cast<unsigned>(p.n_tokens * p.heads), kRowThreads, sizeof(float) * p.head_dim,
                             stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("q_heads_norm_rope_kernel");
}

void kv_norm_rope_quant(const KvRowParams& p, cudaStream_t stream) {
  const char* k = "cuda::kv_norm_rope_quant";
  DS4_LAUNCH_REQUIRE(p.head_dim > 0 && p.n_pairs > 0 && 2 * p.n_pairs <= p.head_dim && p.nope_dim % 64 == 0 &&
                         p.nope_dim <= p.head_dim,
                     k, "bad shape (nope_dim must be a multiple of 64 within head_dim)");
  if (p.n_tokens == 0) return;
  DS4_LAUNCH_REQUIRE(p.kv && p.rawq && p.pos && p.freq, k, "null pointer");
  kv_norm_rope_quant_kernel<<<static_cast<unsigned>(p.n_tokens), kRowThreads, sizeof(float) * p.head_dim, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("kv_norm_rope_quant_kernel");
}

void indexer_q_rope_qat(const IndexerQParams& p, cudaStream_t stream) {
  const char* k = "cuda::indexer_q_rope_qat";
  DS4_LAUNCH_REQUIRE(p.heads > 0 && p.dim >= 32 && (p.dim & (p.dim - 1)) == 0 && p.n_pairs > 0 && 2 * p.n_pairs <= p.dim, k,
                     "dim must be a power of two >= 32 holding the rotated tail");
  if (p.n_tokens == 0) return;
  DS4_LAUNCH_REQUIRE(p.q && p.pos && p.freq, k, "null pointer");
  indexer_q_rope_qat_kernel<<<static_cast<unsigned>(p.n_tokens * p.heads), 128, sizeof(float) * p.dim, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("indexer_q_rope_qat_kernel");
}

}  // namespace ds4::cuda
