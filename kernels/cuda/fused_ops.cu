// Fused kernels of fused_ops.h (the hyper-connection boundary is in hc_fused.cu). Where a kernel
// replaces a chain, each stage keeps the chain's arithmetic and its reduction tree (256-thread
// f64 block sums for the norms, f64 sincos for RoPE, the qat.cuh round trips), so the outputs
// equal the chain's bit for bit.
#include "kernels/cuda/fused_ops.h"

#include <cuda_fp16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/hc_math.cuh"
#include "kernels/cuda/qat.cuh"
#include "kernels/cuda/quant_decode.cuh"
#include "kernels/cuda/reduce.cuh"

namespace ds4::cuda {
namespace {

constexpr int kRowThreads = 256;  // the norms' block size in ops.cu (same reduction tree)

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

// cos / sin of RoPE pair j at pos (ops.cu rope_kernel's f64 sincos, rounded to f32).
__device__ __forceinline__ float2 rope_cos_sin(int32_t pos, const double* freq, int j) {
  double s, c;
  sincos(static_cast<double>(pos) * freq[j], &s, &c);
  return make_float2(static_cast<float>(c), static_cast<float>(s));
}

// The pair this thread rotates (j = threadIdx.x < n_pairs, launchers check n_pairs <= blockDim.x),
// its angle computed before the row is ready.
__device__ __forceinline__ float2 rope_thread_angle(int32_t pos, const double* freq, int n_pairs) {
  return threadIdx.x < n_pairs ? rope_cos_sin(pos, freq, threadIdx.x) : make_float2(1.0f, 0.0f);
}

// RoPE of the tail 2·n_pairs values of row[0..width) in shared memory (ops.cu rope_kernel).
__device__ void rope_row_smem(float* row, int width, float2 cs, int n_pairs) {
  float* tail = row + width - 2 * n_pairs;
  const int j = threadIdx.x;
  if (j < n_pairs) {
    const float cf = cs.x, sf = cs.y;
    const float x0 = tail[2 * j], x1 = tail[2 * j + 1];
    tail[2 * j] = x0 * cf - x1 * sf;
    tail[2 * j + 1] = x0 * sf + x1 * cf;
  }
  __syncthreads();
}

// ---- q heads: one warp per head row ----

constexpr int kQHeadsPerBlock = kRowThreads / 32;
constexpr int kQMaxSpans = 4;  // head_dim <= 256 · kQMaxSpans

// Element (vw, m) of a lane: d = lane + 32·vw + 256·m, i.e. the m-th value of thread 32·vw + lane
// of rms_norm's 256-thread block, so the sum of squares can follow that block's tree exactly.
__device__ __forceinline__ int q_elem(int lane, int vw, int m) { return lane + 32 * vw + 256 * m; }

// rms_norm's block_sum(Σ_m x²) over 256 virtual threads, by one warp: each virtual warp's butterfly
// (a reduce-scatter over the 8 virtual warps for the offsets 16, 8, 4, then 2 and 1), then warp
// 0's butterfly over the 8 warp sums (zeros beyond).
__device__ double q_row_square_sum(const float (&v)[8][kQMaxSpans]) {
  const int lane = threadIdx.x & 31;
  double part[8];
#pragma unroll
  for (int vw = 0; vw < 8; ++vw) {
    double s = 0.0;
#pragma unroll
    for (int m = 0; m < kQMaxSpans; ++m) s += static_cast<double>(v[vw][m]) * v[vw][m];
    part[vw] = s;
  }
  scatter_level<4, 16>(part, lane);  // offsets 16, 8, 4 halve the 8 values: the lane keeps
  scatter_level<2, 8>(part, lane);    // virtual warp (lane >> 2) & 7's
  scatter_level<1, 4>(part, lane);
  double mine = part[0];
  mine += __shfl_xor_sync(0xffffffffu, mine, 2);
  mine += __shfl_xor_sync(0xffffffffu, mine, 1);
  double total = __shfl_sync(0xffffffffu, mine, (4 * lane) & 31);
  return warp_sum(lane < 8 ? total : 0.0);
}

// Lane j < n_pairs (<= 32) computes pair j's angle while the row loads; each tail value takes its
// pair's cos / sin by a shuffle and its partner (d ^ 1) from the next lane.
__global__ void __launch_bounds__(kRowThreads) q_heads_norm_rope_kernel(HeadNormRopeParams p) {
  const int lane = threadIdx.x & 31, width = p.head_dim, tail0 = width - 2 * p.n_pairs;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kQHeadsPerBlock + (threadIdx.x >> 5);
  if (r >= p.n_tokens * p.heads) return;  // the whole warp
  float* x = p.x + r * width;
  float v[8][kQMaxSpans];
#pragma unroll
  for (int vw = 0; vw < 8; ++vw)
#pragma unroll
    for (int m = 0; m < kQMaxSpans; ++m) v[vw][m] = q_elem(lane, vw, m) < width ? x[q_elem(lane, vw, m)] : 0.0f;
  const float2 cs = lane < p.n_pairs ? rope_cos_sin(p.pos[r / p.heads], p.freq, lane) : make_float2(1.0f, 0.0f);
  const double sum = q_row_square_sum(v);
  const float inv = static_cast<float>(1.0 / sqrt(sum / static_cast<double>(width) + static_cast<double>(p.eps)));
#pragma unroll
  for (int vw = 0; vw < 8; ++vw)
#pragma unroll
    for (int m = 0; m < kQMaxSpans; ++m) {
      const int d = q_elem(lane, vw, m);
      if (256 * m >= width) continue;  // uniform over the warp, as is the next test
      float out = v[vw][m] * inv;
      if (32 * vw + 256 * m + 31 >= tail0) {
        const int j = d >= tail0 ? (d - tail0) >> 1 : 0;
        const float cf = __shfl_sync(0xffffffffu, cs.x, j), sf = __shfl_sync(0xffffffffu, cs.y, j);
        const float other = __shfl_xor_sync(0xffffffffu, out, 1);  // the pair's other value
        if (d >= tail0 && d < width) {
          const bool even = ((d - tail0) & 1) == 0;
          const float x0 = even ? out : other, x1 = even ? other : out;
          out = even ? x0 * cf - x1 * sf : x0 * sf + x1 * cf;
        }
      }
      if (d < width) x[d] = out;
    }
}

__global__ void __launch_bounds__(kRowThreads) kv_norm_rope_quant_kernel(KvRowParams p) {
  extern __shared__ float kv_row[];
  const int64_t t = blockIdx.x;
  const float2 cs = rope_thread_angle(p.pos[t], p.freq, p.n_pairs);
  for (int i = threadIdx.x; i < p.head_dim; i += blockDim.x) kv_row[i] = p.kv[t * p.head_dim + i];
  __syncthreads();
  norm_row_smem(kv_row, p.head_dim, p.weight, p.eps);
  rope_row_smem(kv_row, p.head_dim, cs, p.n_pairs);
  float* dst = p.rawq + t * p.head_dim;
  if (p.quantize) {  // a warp per FP8 block of 64
    for (int blk = threadIdx.x >> 5; blk < p.nope_dim / 64; blk += blockDim.x >> 5) fp8_block_round_trip_warp(kv_row + 64 * blk);
    __syncthreads();
    for (int i = threadIdx.x; i < p.head_dim; i += blockDim.x) dst[i] = __half2float(__float2half_rn(kv_row[i]));
  } else {
    for (int i = threadIdx.x; i < p.head_dim; i += blockDim.x) dst[i] = kv_row[i];
  }
}

__global__ void indexer_q_rope_qat_kernel(IndexerQParams p) {
  extern __shared__ float iq_row[];
  const int64_t r = blockIdx.x, t = r / p.heads;
  const float2 cs = rope_thread_angle(p.pos[t], p.freq, p.n_pairs);
  float* x = p.q + r * p.dim;
  for (int i = threadIdx.x; i < p.dim; i += blockDim.x) iq_row[i] = x[i];
  __syncthreads();
  rope_row_smem(iq_row, p.dim, cs, p.n_pairs);
  if (p.quantize) hadamard_fp4_block(iq_row, p.dim);
  for (int i = threadIdx.x; i < p.dim; i += blockDim.x) x[i] = iq_row[i];
}

}  // namespace

void q_heads_norm_rope(const HeadNormRopeParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.heads > 0 && p.head_dim > 0 && p.head_dim % 2 == 0 && p.head_dim <= 256 * kQMaxSpans &&
                         p.n_pairs > 0 && p.n_pairs <= 32 && 2 * p.n_pairs <= p.head_dim,
                     "cuda::q_heads_norm_rope", "bad shape (even head_dim <= 1024 holding the rotated tail of <= 32 pairs)");
  if (p.n_tokens == 0) return;
  DS4_LAUNCH_REQUIRE(p.x && p.pos && p.freq, "cuda::q_heads_norm_rope", "null pointer");
  const int64_t rows = p.n_tokens * p.heads;
  q_heads_norm_rope_kernel<<<static_cast<unsigned>((rows + kQHeadsPerBlock - 1) / kQHeadsPerBlock), kRowThreads, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("q_heads_norm_rope_kernel");
}

void kv_norm_rope_quant(const KvRowParams& p, cudaStream_t stream) {
  const char* k = "cuda::kv_norm_rope_quant";
  DS4_LAUNCH_REQUIRE(p.head_dim > 0 && p.n_pairs > 0 && p.n_pairs <= kRowThreads && 2 * p.n_pairs <= p.head_dim &&
                         p.nope_dim % 64 == 0 && p.nope_dim <= p.head_dim,
                     k, "bad shape (nope_dim must be a multiple of 64 within head_dim)");
  if (p.n_tokens == 0) return;
  DS4_LAUNCH_REQUIRE(p.kv && p.rawq && p.pos && p.freq, k, "null pointer");
  kv_norm_rope_quant_kernel<<<static_cast<unsigned>(p.n_tokens), kRowThreads, sizeof(float) * p.head_dim, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("kv_norm_rope_quant_kernel");
}

void indexer_q_rope_qat(const IndexerQParams& p, cudaStream_t stream) {
  const char* k = "cuda::indexer_q_rope_qat";
  DS4_LAUNCH_REQUIRE(p.heads > 0 && p.dim >= 32 && (p.dim & (p.dim - 1)) == 0 && p.n_pairs > 0 && p.n_pairs <= 128 &&
                         2 * p.n_pairs <= p.dim,
                     k,
                     "dim must be a power of two >= 32 holding the rotated tail");
  if (p.n_tokens == 0) return;
  DS4_LAUNCH_REQUIRE(p.q && p.pos && p.freq, k, "null pointer");
  indexer_q_rope_qat_kernel<<<static_cast<unsigned>(p.n_tokens * p.heads), 128, sizeof(float) * p.dim, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("indexer_q_rope_qat_kernel");
}

}  // namespace ds4::cuda
