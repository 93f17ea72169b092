// attention_split (attention.h): the decode/prefill attention with the K=V rows read once per
// group of kHeadGroup heads and each token's rows split over up to kAttentionMaxSplits blocks.
// Partial kernel: scores (f32 dot, × 1/sqrt(d)), the split's max m_j, e = exp(s − m_j) and
// den_j = Σ e in f64, acc_j = Σ e · row in f64 (stored as f32). Combine kernel: m = max(sink,
// m_j), out = Σ_j acc_j e^{m_j − m} / (e^{sink − m} + Σ_j den_j e^{m_j − m}), then the inverse
// RoPE of the tail and the raw-ring store. Splits depend only on the token's own row count.
#include <algorithm>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kv_address.cuh"
#include "kernels/cuda/reduce.cuh"

namespace ds4::cuda {
namespace {

constexpr int kHeadGroup = 4;
constexpr int kSplitThreads = 256;
constexpr int kSplitRows = 128;  // rows per split until kAttentionMaxSplits are used

// Rows a token attends to: its raw window (ring before the step, rawq of the step), then its
// compressed rows (all visible, or the indexer's selection).
struct TokenRows {
  int64_t pos = 0, start = 0, lo = 0, n_raw = 0, n_rows = 0;
  int seq = 0, sel = -1;
};

__device__ __forceinline__ TokenRows token_rows(const StepBatch& b, const LayerKv& kv, const AttentionParams& p, int64_t t) {
  TokenRows r;
  r.seq = b.token_seq[t];
  r.pos = b.token_pos[t], r.start = b.seq_start[r.seq];
  r.lo = raw_window_lo(b, kv, r.seq, r.pos);
  r.n_raw = r.pos - r.lo + 1;
  r.sel = p.sel_of_token ? p.sel_of_token[t] : -1;
  const int64_t n_comp = kv.ratio == 0 ? 0 : (r.sel >= 0 ? p.top_k : (r.pos + 1) / kv.ratio);
  r.n_rows = r.n_raw + n_comp;
  return r;
}

__device__ __forceinline__ const float* row_ptr(const StepBatch& b, const LayerKv& kv, const AttentionParams& p,
                                                const TokenRows& tr, int64_t t, int64_t r) {
  if (r < tr.n_raw) {
    const int64_t qp = tr.lo + r;
    return qp < tr.start ? raw_ring_row(kv, b.seq_slot[tr.seq], qp) : p.rawq + (t - (tr.pos - qp)) * kv.head_dim;
  }
  const int64_t c = tr.sel >= 0 ? p.selected[static_cast<int64_t>(tr.sel) * p.top_k + (r - tr.n_raw)] : r - tr.n_raw;
  return block_row(b, kv.comp, kv.rows_per_block, kv.comp_block_stride, kv.head_dim, tr.seq, c);
}

__device__ __forceinline__ int splits_for(int64_t n_rows) {
  const int64_t s = (n_rows + kSplitRows - 1) / kSplitRows;
  return static_cast<int>(s < kAttentionMaxSplits ? (s > 0 ? s : 1) : kAttentionMaxSplits);
}

// Grid (splits, heads / kHeadGroup, chunk tokens).
__global__ void __launch_bounds__(kSplitThreads) attention_partial_kernel(StepBatch b, LayerKv kv, AttentionParams p,
                                                                         AttentionSplitExtras x, int64_t t0, int per_max) {
  extern __shared__ unsigned char split_smem[];
  const int hd = kv.head_dim;
  double* e = reinterpret_cast<double*>(split_smem);                     // [kHeadGroup][per_max]
  const float** rows = reinterpret_cast<const float**>(e + kHeadGroup * per_max);  // [per_max]
  float* q = reinterpret_cast<float*>(rows + per_max);                   // [kHeadGroup][hd]
  __shared__ double ml[kHeadGroup][2];
  const int64_t tc = blockIdx.z, t = t0 + tc;
  const int split = blockIdx.x, h0 = blockIdx.y * kHeadGroup;
  const TokenRows tr = token_rows(b, kv, p, t);
  const int n_split = splits_for(tr.n_rows);
  if (split >= n_split) return;
  const int64_t per = (tr.n_rows + n_split - 1) / n_split, r0 = split * per;
  const int64_t r1 = r0 + per < tr.n_rows ? r0 + per : tr.n_rows, n = r1 - r0;
  for (int i = threadIdx.x; i < kHeadGroup * hd; i += blockDim.x) q[i] = p.q[(t * p.heads + h0) * hd + i];
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) rows[r] = row_ptr(b, kv, p, tr, t, r0 + r);
  __syncthreads();
  // Scores: a warp per row, each lane 4 consecutive values per 128, four heads at once.
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int64_t r = warp; r < n; r += kSplitThreads / 32) {
    float d[kHeadGroup] = {};
    for (int i = 4 * lane; i < hd; i += 128) {
      const float4 k = *reinterpret_cast<const float4*>(rows[r] + i);
#pragma unroll
      for (int h = 0; h < kHeadGroup; ++h) {
        const float* qh = q + h * hd + i;
        d[h] = fmaf(qh[0], k.x, fmaf(qh[1], k.y, fmaf(qh[2], k.z, fmaf(qh[3], k.w, d[h]))));
      }
    }
#pragma unroll
    for (int h = 0; h < kHeadGroup; ++h) {
      const float s = warp_sum(d[h]);
      if (lane == 0) e[h * per_max + r] = static_cast<double>(s * scale);
    }
  }
  __syncthreads();
  // Per head (warp h): the split's max and Σ exp(s − max), e overwritten with the exponentials.
  if (warp < kHeadGroup) {
    double* eh = e + warp * per_max;
    double mx = -INFINITY;
    for (int64_t r = lane; r < n; r += 32) mx = fmax(mx, eh[r]);
    mx = warp_max(mx);
    double den = 0.0;
    for (int64_t r = lane; r < n; r += 32) den += (eh[r] = exp(eh[r] - mx));
    den = warp_sum(den);
    if (lane == 0) ml[warp][0] = mx, ml[warp][1] = den;
  }
  __syncthreads();
  // Values: each thread two consecutive dims of the four heads.
  const int64_t ws_base = (tc * kAttentionMaxSplits + split) * p.heads + h0;
  for (int d0 = 2 * threadIdx.x; d0 < hd; d0 += 2 * blockDim.x) {
    double acc[kHeadGroup][2] = {};
    for (int64_t r = 0; r < n; ++r) {
      const float2 v = *reinterpret_cast<const float2*>(rows[r] + d0);
#pragma unroll
      for (int h = 0; h < kHeadGroup; ++h) {
        const double w = e[h * per_max + r];
        acc[h][0] = fma(w, static_cast<double>(v.x), acc[h][0]);
        acc[h][1] = fma(w, static_cast<double>(v.y), acc[h][1]);
      }
    }
#pragma unroll
    for (int h = 0; h < kHeadGroup; ++h) {
      float* dst = x.ws_acc + (ws_base + h) * hd + d0;
      dst[0] = static_cast<float>(acc[h][0]);
      dst[1] = static_cast<float>(acc[h][1]);
    }
  }
  if (threadIdx.x < 2 * kHeadGroup) x.ws_ml[(ws_base + threadIdx.x / 2) * 2 + threadIdx.x % 2] = ml[threadIdx.x / 2][threadIdx.x % 2];
}

// Grid (heads, chunk tokens): combine the splits, inverse RoPE, store the raw row (head 0).
__global__ void __launch_bounds__(kSplitThreads) attention_combine_kernel(StepBatch b, LayerKv kv, AttentionParams p,
                                                                         AttentionSplitExtras x, int64_t t0) {
  const int hd = kv.head_dim;
  const int64_t tc = blockIdx.y, t = t0 + tc;
  const int h = blockIdx.x;
  const TokenRows tr = token_rows(b, kv, p, t);
  const int n_split = splits_for(tr.n_rows);
  const double* ml = x.ws_ml + (tc * kAttentionMaxSplits * p.heads + h) * 2;
  const int64_t split_stride = static_cast<int64_t>(p.heads) * 2;
  const double sink = p.sinks[h];
  double mx = sink;
  for (int j = 0; j < n_split; ++j) mx = fmax(mx, ml[j * split_stride]);
  double den = exp(sink - mx);
  double f[kAttentionMaxSplits];
#pragma unroll
  for (int j = 0; j < kAttentionMaxSplits; ++j) {
    f[j] = j < n_split ? exp(ml[j * split_stride] - mx) : 0.0;
    if (j < n_split) den += ml[j * split_stride + 1] * f[j];
  }
  const float* acc = x.ws_acc + (tc * kAttentionMaxSplits * p.heads + h) * hd;
  const int64_t acc_split = static_cast<int64_t>(p.heads) * hd;
  float* out = p.out + (t * p.heads + h) * hd;
  const int tail = hd - 2 * x.n_pairs;
  for (int d0 = 2 * threadIdx.x; d0 < hd; d0 += 2 * blockDim.x) {
    double o0 = 0.0, o1 = 0.0;
#pragma unroll
    for (int j = 0; j < kAttentionMaxSplits; ++j)
      if (j < n_split) o0 += f[j] * acc[j * acc_split + d0], o1 += f[j] * acc[j * acc_split + d0 + 1];
    float v0 = static_cast<float>(o0 / den), v1 = static_cast<float>(o1 / den);
    if (x.inv_freq && d0 >= tail) {  // ops.cu rope_kernel, inverse
      double sn, cs;
      sincos(static_cast<double>(tr.pos) * x.inv_freq[(d0 - tail) / 2], &sn, &cs);
      const float cf = static_cast<float>(cs), sf = static_cast<float>(-sn);
      const float a = v0, c = v1;
      v0 = a * cf - c * sf;
      v1 = a * sf + c * cf;
    }
    out[d0] = v0, out[d0 + 1] = v1;
  }
  if (!x.store_raw || h != 0) return;
  const int64_t end = tr.start + b.seq_count[tr.seq];
  if (tr.pos < end - kv.window) return;
  float* ring = raw_ring_row(kv, b.seq_slot[tr.seq], tr.pos);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) ring[d] = p.rawq[t * hd + d];
}

size_t round256(size_t v) { return (v + 255) / 256 * 256; }

}  // namespace

size_t attention_split_workspace_bytes(int heads, int head_dim) {
  const size_t slots = static_cast<size_t>(kAttentionChunkTokens) * kAttentionMaxSplits * heads;
  return round256(slots * head_dim * sizeof(float)) + round256(slots * 2 * sizeof(double));
}

void attention_split(const StepBatch& b, const LayerKv& kv_in, const AttentionParams& p, const AttentionSplitExtras& x,
                     cudaStream_t stream) {
  const char* k = "cuda::attention_split";
  const LayerKv kv = resolved(kv_in, k);
  DS4_LAUNCH_REQUIRE(p.heads > 0 && p.heads % kHeadGroup == 0 && kv.head_dim > 0 && kv.head_dim % 4 == 0 && kv.window > 0 &&
                         p.max_rows > 0,
                     k, "heads must be a multiple of 4 and head_dim of 4");
  DS4_LAUNCH_REQUIRE(kv.ratio == 0 || kv.rows_per_block > 0, k, "compressed layer without block geometry");
  DS4_LAUNCH_REQUIRE(!p.sel_of_token || (p.selected && p.top_k > 0), k, "selection without rows");
  DS4_LAUNCH_REQUIRE(x.ws_acc && x.ws_ml && p.q && p.rawq && p.sinks && p.out, k, "null pointer");
  DS4_LAUNCH_REQUIRE(!x.inv_freq || (x.n_pairs > 0 && 2 * x.n_pairs <= kv.head_dim), k, "bad RoPE tail");
  DS4_LAUNCH_REQUIRE(!x.store_raw || kv.raw, k, "raw store without a ring");
  if (b.n_tokens == 0) return;
  const int per_max = static_cast<int>(std::max<int64_t>(kSplitRows, (p.max_rows + kAttentionMaxSplits - 1) / kAttentionMaxSplits));
  const size_t smem = static_cast<size_t>(per_max) * (kHeadGroup * sizeof(double) + sizeof(float*)) +
                      sizeof(float) * kHeadGroup * kv.head_dim;
  DS4_LAUNCH_REQUIRE(smem <= 200 * 1024, k, "too many attended rows: " + std::to_string(p.max_rows));
  DS4_CUDA_CHECK(cudaFuncSetAttribute(attention_partial_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
  const int max_splits = static_cast<int>(std::min<int64_t>((p.max_rows + kSplitRows - 1) / kSplitRows, kAttentionMaxSplits));
  for (int64_t t0 = 0; t0 < b.n_tokens; t0 += kAttentionChunkTokens) {
    const unsigned tokens = static_cast<unsigned>(std::min<int64_t>(kAttentionChunkTokens, b.n_tokens - t0));
    attention_partial_kernel<<<dim3(std::max(max_splits, 1), p.heads / kHeadGroup, tokens), kSplitThreads, smem, stream>>>(
        b, kv, p, x, t0, per_max);
    DS4_CUDA_LAUNCH_CHECK("attention_partial_kernel");
    attention_combine_kernel<<<dim3(p.heads, tokens), kSplitThreads, 0, stream>>>(b, kv, p, x, t0);
    DS4_CUDA_LAUNCH_CHECK("attention_combine_kernel");
  }
}

}  // namespace ds4::cuda
