// attention_split (attention.h): the decode/prefill attention with the K=V rows read once per
// group of G heads (8; 4 for steps of few tokens or heads not a multiple of 8) and each token's
// rows split over up to kAttentionMaxSplits blocks. Partial kernel: scores (f32 dot, × 1/sqrt(d);
// the group's q rows in shared memory), the split's max m_j, e = exp(s − m_j) and den_j = Σ e
// in f64, acc_j = Σ e · row in f64 (stored as f32). Combine kernel: m = max(sink, m_j), out =
// Σ_j acc_j e^{m_j − m} / (e^{sink − m} + Σ_j den_j e^{m_j − m}), then the inverse RoPE of the
// tail and the raw-ring store. Splits depend only on the token's own row count; the head grouping
// changes no sum, so both groupings give the same bits (batch invariance holds across them).
#include <algorithm>
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kv_address.cuh"
#include "kernels/cuda/reduce.cuh"

namespace ds4::cuda {
namespace {

constexpr int kSplitThreads = 256;
constexpr int kSplitRows = 128;  // rows per split until kAttentionMaxSplits are used
constexpr int64_t kWideGroupTokens = 16;  // steps of fewer tokens use 4-head groups

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

// Score dots of kScoreHeads heads for one row: lane l's chain over its 4 consecutive values per
// 128 (fmaf, as before), then warp_sum's butterfly tree (xor 16, 8, 4, 2, 1) reduced "scattered":
// the same pairs are added, but each level passes on only half of the heads still held. Returns
// the dot of head (lane >> 3) & 3 of the warp's heads.
constexpr int kScoreHeads = 4;
constexpr int kMaxLaneChunks = kAttentionMaxHeadDim / 128;

__device__ __forceinline__ float scatter_reduce_4(float (&v)[kScoreHeads], int lane) {
#pragma unroll
  for (int level = 0, half = kScoreHeads / 2; half >= 1; ++level, half /= 2) {
    const int off = 16 >> level;
    const bool upper = lane & off;
#pragma unroll
    for (int i = 0; i < half; ++i) {
      const float keep = upper ? v[i + half] : v[i], give = upper ? v[i] : v[i + half];
      v[i] = keep + __shfl_xor_sync(0xffffffffu, give, off);
    }
  }
  float d = v[0];
#pragma unroll
  for (int off = 4; off > 0; off >>= 1) d += __shfl_xor_sync(0xffffffffu, d, off);
  return d;
}

// Scores of kScoreHeads heads (q_s: their q rows in shared memory, hd floats each) for rows
// r_first, r_first + r_step, ... into e[h · per_max + r] as f64. kRowsInFlight rows per
// iteration: their loads are issued together (one row at a time left the warp waiting on each
// row's memory latency); each row's dot is computed exactly as alone.
constexpr int kRowsInFlight = 2;

__device__ __forceinline__ void split_scores(const float* q_s, int hd, const float* const* rows, int64_t r_first,
                                             int64_t r_step, int64_t n, double* e, int head_slot0, int per_max) {
  const int lane = threadIdx.x & 31;
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  for (int64_t r = r_first; r < n; r += kRowsInFlight * r_step) {
    float d[kRowsInFlight][kScoreHeads] = {};
#pragma unroll
    for (int c = 0; c < kMaxLaneChunks; ++c) {
      const int i = 4 * lane + 128 * c;
      if (i >= hd) break;
      float4 k[kRowsInFlight];
#pragma unroll
      for (int j = 0; j < kRowsInFlight; ++j) {
        const int64_t rj = r + j * r_step;
        k[j] = rj < n ? *reinterpret_cast<const float4*>(rows[rj] + i) : float4{};
      }
#pragma unroll
      for (int h = 0; h < kScoreHeads; ++h) {
        const float4 qh = *reinterpret_cast<const float4*>(q_s + h * hd + i);
#pragma unroll
        for (int j = 0; j < kRowsInFlight; ++j)
          d[j][h] = fmaf(qh.x, k[j].x, fmaf(qh.y, k[j].y, fmaf(qh.z, k[j].z, fmaf(qh.w, k[j].w, d[j][h]))));
      }
    }
#pragma unroll
    for (int j = 0; j < kRowsInFlight; ++j) {
      const int64_t rj = r + j * r_step;
      if (rj >= n) break;  // the same for the whole warp
      const float s = scatter_reduce_4(d[j], lane);
      if ((lane & 7) == 0) e[(head_slot0 + (lane >> 3)) * per_max + rj] = static_cast<double>(s * scale);
    }
  }
}

// Values: each thread two consecutive dims of the G heads, rows in order; the f64 sums go to the
// workspace as f32.
template <int G>
__device__ __forceinline__ void split_values(const AttentionParams& p, const AttentionSplitExtras& x, int hd,
                                             const float* const* rows, int64_t n, const double* e, int per_max,
                                             int64_t ws_base) {
  for (int d0 = 2 * threadIdx.x; d0 < hd; d0 += 2 * blockDim.x) {
    double acc[G][2] = {};
#pragma unroll 4
    for (int64_t r = 0; r < n; ++r) {
      const float2 v = *reinterpret_cast<const float2*>(rows[r] + d0);
      const double v0 = v.x, v1 = v.y;
#pragma unroll
      for (int h = 0; h < G; ++h) {
        const double w = e[h * per_max + r];
        acc[h][0] = fma(w, v0, acc[h][0]);
        acc[h][1] = fma(w, v1, acc[h][1]);
      }
    }
#pragma unroll
    for (int h = 0; h < G; ++h) {
      float* dst = x.ws_acc + (ws_base + h) * hd + d0;
      dst[0] = static_cast<float>(acc[h][0]);
      dst[1] = static_cast<float>(acc[h][1]);
    }
  }
}

// Grid (splits, heads / G, chunk tokens); G = 4 or 8 heads share each row read.
// Registers budgeted for 3 blocks per SM (a few spilled; q lives in shared memory): more warps to
// hide the rows' memory latency than 2 blocks without spills (H200, full-size q2: the 256-token
// step 313.4 -> 305.9 ms, 64-token 133.3 -> 131.8, 2048-token prefill 1607 -> 1584 ms).
template <int G>
__global__ void __launch_bounds__(kSplitThreads, 3) attention_partial_kernel(StepBatch b, LayerKv kv, AttentionParams p,
                                                                            AttentionSplitExtras x, int64_t t0, int per_max) {
  static_assert(G % kScoreHeads == 0 && G <= kSplitThreads / 32, "a warp per head in the softmax pass");
  extern __shared__ unsigned char split_smem[];
  const int hd = kv.head_dim;
  double* e = reinterpret_cast<double*>(split_smem);                     // [G][per_max]
  const float** rows = reinterpret_cast<const float**>(e + G * per_max);  // [per_max]
  float* q_s = reinterpret_cast<float*>(rows + per_max);                 // [G][hd]: the group's q rows
  __shared__ double ml[G][2];
  const int64_t tc = blockIdx.z, t = t0 + tc;
  const int split = blockIdx.x, h0 = blockIdx.y * G;
  const TokenRows tr = token_rows(b, kv, p, t);
  const int n_split = splits_for(tr.n_rows);
  if (split >= n_split) return;
  const int64_t per = (tr.n_rows + n_split - 1) / n_split, r0 = split * per;
  const int64_t r1 = r0 + per < tr.n_rows ? r0 + per : tr.n_rows, n = r1 - r0;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) rows[r] = row_ptr(b, kv, p, tr, t, r0 + r);
  const float* q_group = p.q + (t * p.heads + h0) * hd;  // G heads' rows, contiguous
  for (int i = 4 * threadIdx.x; i < G * hd; i += 4 * blockDim.x)
    *reinterpret_cast<float4*>(q_s + i) = *reinterpret_cast<const float4*>(q_group + i);
  __syncthreads();
  // Scores: warp w takes heads (w mod G/4)·4 .. +3 and every (G/4 · 32 / blockDim)-th row.
  constexpr int kHeadSets = G / kScoreHeads, kRowWarps = kSplitThreads / 32 / kHeadSets;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, set = warp % kHeadSets;
  split_scores(q_s + set * kScoreHeads * hd, hd, rows, warp / kHeadSets, kRowWarps, n, e, set * kScoreHeads, per_max);
  __syncthreads();
  // Per head (warp h): the split's max and Σ exp(s − max), e overwritten with the exponentials.
  if (warp < G) {
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
  const int64_t ws_base = (tc * kAttentionMaxSplits + split) * p.heads + h0;
  split_values<G>(p, x, hd, rows, n, e, per_max, ws_base);
  if (threadIdx.x < 2 * G) x.ws_ml[(ws_base + threadIdx.x / 2) * 2 + threadIdx.x % 2] = ml[threadIdx.x / 2][threadIdx.x % 2];
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

template <int G>
void launch_split(const StepBatch& b, const LayerKv& kv, const AttentionParams& p, const AttentionSplitExtras& x,
                  cudaStream_t stream) {
  const char* k = "cuda::attention_split";
  // Even, so that q_s after the row pointers stays 16-byte aligned.
  const int per_max = static_cast<int>(
      (std::max<int64_t>(kSplitRows, (p.max_rows + kAttentionMaxSplits - 1) / kAttentionMaxSplits) + 1) / 2 * 2);
  const size_t smem = static_cast<size_t>(per_max) * (G * sizeof(double) + sizeof(float*)) + G * kv.head_dim * sizeof(float);
  DS4_LAUNCH_REQUIRE(smem <= 200 * 1024, k, "too many attended rows: " + std::to_string(p.max_rows));
  DS4_CUDA_CHECK(cudaFuncSetAttribute(attention_partial_kernel<G>, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024));
  const int max_splits = static_cast<int>(std::min<int64_t>((p.max_rows + kSplitRows - 1) / kSplitRows, kAttentionMaxSplits));
  for (int64_t t0 = 0; t0 < b.n_tokens; t0 += kAttentionChunkTokens) {
    const unsigned tokens = static_cast<unsigned>(std::min<int64_t>(kAttentionChunkTokens, b.n_tokens - t0));
    attention_partial_kernel<G><<<dim3(std::max(max_splits, 1), p.heads / G, tokens), kSplitThreads, smem, stream>>>(
        b, kv, p, x, t0, per_max);
    DS4_CUDA_LAUNCH_CHECK("attention_partial_kernel");
    attention_combine_kernel<<<dim3(p.heads, tokens), kSplitThreads, 0, stream>>>(b, kv, p, x, t0);
    DS4_CUDA_LAUNCH_CHECK("attention_combine_kernel");
  }
}

}  // namespace

size_t attention_split_workspace_bytes(int heads, int head_dim) {
  const size_t slots = static_cast<size_t>(kAttentionChunkTokens) * kAttentionMaxSplits * heads;
  return round256(slots * head_dim * sizeof(float)) + round256(slots * 2 * sizeof(double));
}

void attention_split(const StepBatch& b, const LayerKv& kv_in, const AttentionParams& p, const AttentionSplitExtras& x,
                     cudaStream_t stream) {
  const char* k = "cuda::attention_split";
  const LayerKv kv = resolved(kv_in, k);
  DS4_LAUNCH_REQUIRE(p.heads > 0 && p.heads % 4 == 0 && kv.head_dim > 0 && kv.head_dim % 4 == 0 &&
                         kv.head_dim <= kAttentionMaxHeadDim && kv.window > 0 && p.max_rows > 0,
                     k, "heads must be a multiple of 4 and head_dim of 4, at most " + std::to_string(kAttentionMaxHeadDim));
  DS4_LAUNCH_REQUIRE(kv.ratio == 0 || kv.rows_per_block > 0, k, "compressed layer without block geometry");
  DS4_LAUNCH_REQUIRE(!p.sel_of_token || (p.selected && p.top_k > 0), k, "selection without rows");
  DS4_LAUNCH_REQUIRE(x.ws_acc && x.ws_ml && p.q && p.rawq && p.sinks && p.out, k, "null pointer");
  DS4_LAUNCH_REQUIRE(reinterpret_cast<uintptr_t>(p.q) % 16 == 0, k, "q must be 16-byte aligned");
  DS4_LAUNCH_REQUIRE(!x.inv_freq || (x.n_pairs > 0 && 2 * x.n_pairs <= kv.head_dim), k, "bad RoPE tail");
  DS4_LAUNCH_REQUIRE(!x.store_raw || kv.raw, k, "raw store without a ring");
  if (b.n_tokens == 0) return;
  // 8-head groups halve the row reads but also the blocks: below kWideGroupTokens tokens there are
  // too few blocks to fill the GPU, so 4-head groups (the same bits either way).
  if (p.heads % 8 == 0 && b.n_tokens >= kWideGroupTokens) launch_split<8>(b, kv, p, x, stream);
  else launch_split<4>(b, kv, p, x, stream);
}

}  // namespace ds4::cuda
