// Attention-side kernels of attention.h (the compressor update is in compressor.cu, the split
// attention in attention_split.cu): one block per (token, head), emitted row or scored query
// (the indexer: per query and 32 rows). Scores and softmax sums use f64 like the CPU reference;
// every reduction has a fixed order.
#include "kernels/cuda/attention.h"

#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/kv_address.cuh"
#include "kernels/cuda/qat.cuh"
#include "kernels/cuda/quant_decode.cuh"
#include "kernels/cuda/reduce.cuh"

namespace ds4::cuda {
namespace {

constexpr int kThreads = 256;
constexpr size_t kMaxAttentionSmem = 200 * 1024;

__global__ void quantize_raw_rows_kernel(RawRowParams p) {
  const int64_t t = blockIdx.x;
  const float* src = p.kv + t * p.head_dim;
  float* dst = p.rawq + t * p.head_dim;
  for (int i = threadIdx.x; i < p.head_dim; i += blockDim.x) dst[i] = src[i];
  if (!p.quantize) return;
  __syncthreads();
  for (int blk = threadIdx.x; blk < p.nope_dim / 64; blk += blockDim.x) fp8_block_round_trip(dst + 64 * blk);
  __syncthreads();
  for (int i = threadIdx.x; i < p.head_dim; i += blockDim.x) dst[i] = __half2float(__float2half_rn(dst[i]));
}

__global__ void store_raw_window_kernel(StepBatch b, LayerKv kv, const float* rawq) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= b.n_tokens * kv.head_dim) return;
  const int64_t t = id / kv.head_dim;
  const int d = static_cast<int>(id % kv.head_dim);
  const int s = b.token_seq[t];
  const int64_t pos = b.token_pos[t], end = static_cast<int64_t>(b.seq_start[s]) + b.seq_count[s];
  if (pos < end - kv.window) return;
  raw_ring_row(kv, b.seq_slot[s], pos)[d] = rawq[id];
}

__global__ void compressed_finish_kernel(StepBatch b, CompressedFinishParams p) {
  extern __shared__ float finish_row[];  // [row_dim]
  // Both arms int64_t: with unsigned blockIdx.x the conditional would be unsigned and -1 a huge row.
  const int64_t e = p.emit_index ? static_cast<int64_t>(p.emit_index[blockIdx.x]) : static_cast<int64_t>(blockIdx.x);
  if (e < 0) return;
  const int D = p.row_dim;
  double sum = 0.0;
  for (int i = threadIdx.x; i < D; i += blockDim.x) {
    const float v = p.pooled[e * D + i];
    finish_row[i] = v;
    sum += static_cast<double>(v) * v;
  }
  sum = block_sum(sum);
  const float inv = static_cast<float>(1.0 / sqrt(sum / static_cast<double>(D) + static_cast<double>(p.eps)));
  for (int i = threadIdx.x; i < D; i += blockDim.x) finish_row[i] = finish_row[i] * inv * p.norm[i];
  __syncthreads();
  for (int j = threadIdx.x; j < p.n_pairs; j += blockDim.x) {
    double sn, cs;
    sincos(static_cast<double>(p.emit_pos[e]) * p.freq[j], &sn, &cs);
    const float cf = static_cast<float>(cs), sf = static_cast<float>(sn);
    float* tail = finish_row + D - 2 * p.n_pairs;
    const float x0 = tail[2 * j], x1 = tail[2 * j + 1];
    tail[2 * j] = x0 * cf - x1 * sf;
    tail[2 * j + 1] = x0 * sf + x1 * cf;
  }
  __syncthreads();
  if (p.quantize) {
    if (p.indexer) {
      hadamard_fp4_block(finish_row, D);
    } else {
      for (int blk = threadIdx.x; blk < p.nope_dim / 64; blk += blockDim.x) fp8_block_round_trip(finish_row + 64 * blk);
      __syncthreads();
    }
  }
  float* dst = block_row(b, p.store, p.rows_per_block, p.block_stride, D, p.emit_seq[e], p.emit_row[e]);
  for (int i = threadIdx.x; i < D; i += blockDim.x) dst[i] = finish_row[i];
}

__global__ void hadamard_fp4_rows_kernel(float* x, int dim) {
  extern __shared__ float had_row[];
  float* v = x + static_cast<int64_t>(blockIdx.x) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) had_row[i] = v[i];
  hadamard_fp4_block(had_row, dim);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) v[i] = had_row[i];
}

__global__ void fp8_rows_kernel(float* x, int64_t row_stride, int nope_dim) {
  float* row = x + static_cast<int64_t>(blockIdx.x) * row_stride;
  for (int blk = threadIdx.x; blk < nope_dim / 64; blk += blockDim.x) fp8_block_round_trip(row + 64 * blk);
}

// Indexer scores: a block scores kScoreRowsPerBlock rows of one query (staged as f64); warp g
// computes the dots of head group g (kScoreHeadsPerWarp heads, q in registers as f64) for every
// row of the block, then one thread per row adds the heads up in head order. Each (row, head) dot
// is the sum a warp_sum would give: lane l's partial Σ_j q[l+32j]·k[l+32j] in j order, combined
// over the butterfly tree (lanes l and l^16, then ^8, ^4, ^2, ^1). The tree is reduced
// "scattered" (each level exchanges half of the heads still held): the same pairs are added as in
// the butterflies, in 9 shuffles for 8 heads instead of 40.
constexpr int kScoreRowsPerBlock = 32;
constexpr int kScoreHeadsPerWarp = 8;
constexpr int kScoreWarps = 8;
constexpr int kScoreMaxDim = 128;  // 4 values per lane
constexpr int kScoreLaneDims = kScoreMaxDim / 32;

// v[0..7] of lane l: its partials of 8 heads. Returns the full dot of head (l >> 2) of the group.
__device__ __forceinline__ double scatter_reduce_8(double (&v)[kScoreHeadsPerWarp], int lane) {
#pragma unroll
  for (int level = 0, half = kScoreHeadsPerWarp / 2; half >= 1; ++level, half /= 2) {
    const int off = 16 >> level;
    const bool upper = lane & off;  // keeps heads [half, 2·half) of those still held
#pragma unroll
    for (int i = 0; i < half; ++i) {
      const double keep = upper ? v[i + half] : v[i], give = upper ? v[i] : v[i + half];
      v[i] = keep + __shfl_xor_sync(0xffffffffu, give, off);
    }
  }
  double d = v[0];
  d += __shfl_xor_sync(0xffffffffu, d, 2);
  d += __shfl_xor_sync(0xffffffffu, d, 1);
  return d;
}

// Dots of head group g for the block's n rows (staged in rows[r · dim]) into dots[r · stride + head].
__device__ void indexer_group_dots(const IndexerScoreParams& p, int64_t t, int g, int n, const double* rows, double* dots,
                                   int stride) {
  const int lane = threadIdx.x & 31;
  double q[kScoreHeadsPerWarp][kScoreLaneDims];
#pragma unroll
  for (int hh = 0; hh < kScoreHeadsPerWarp; ++hh) {
    const int h = g * kScoreHeadsPerWarp + hh;
#pragma unroll
    for (int j = 0; j < kScoreLaneDims; ++j) {
      const int k = lane + 32 * j;
      q[hh][j] = h < p.heads && k < p.dim ? static_cast<double>(p.q[(t * p.heads + h) * p.dim + k]) : 0.0;
    }
  }
#pragma unroll 2
  for (int r = 0; r < n; ++r) {
    double kv[kScoreLaneDims];
#pragma unroll
    for (int j = 0; j < kScoreLaneDims; ++j) kv[j] = lane + 32 * j < p.dim ? rows[r * p.dim + lane + 32 * j] : 0.0;
    double d[kScoreHeadsPerWarp];
#pragma unroll
    for (int hh = 0; hh < kScoreHeadsPerWarp; ++hh) {
      d[hh] = 0.0;
#pragma unroll
      for (int j = 0; j < kScoreLaneDims; ++j)
        if (lane + 32 * j < p.dim) d[hh] += q[hh][j] * kv[j];
    }
    const double dot = scatter_reduce_8(d, lane);
    if ((lane & 3) == 0) dots[r * stride + g * kScoreHeadsPerWarp + (lane >> 2)] = dot;
  }
}

__global__ void __launch_bounds__(kScoreWarps * 32) indexer_scores_kernel(StepBatch b, IndexerScoreParams p) {
  extern __shared__ double dots[];  // [kScoreRowsPerBlock][stride], rows [kScoreRowsPerBlock][dim], w [heads]
  const int64_t i = blockIdx.x;
  const int64_t t = p.tokens[i];
  if (t < 0) return;
  const int s = b.token_seq[t];
  const int64_t n_visible = (static_cast<int64_t>(b.token_pos[t]) + 1) / p.ratio;
  const int64_t c0 = static_cast<int64_t>(blockIdx.y) * kScoreRowsPerBlock;
  const int64_t left = (n_visible < p.max_rows ? n_visible : p.max_rows) - c0;
  const int n = left <= 0 ? 0 : (left < kScoreRowsPerBlock ? static_cast<int>(left) : kScoreRowsPerBlock);
  const int n_groups = (p.heads + kScoreHeadsPerWarp - 1) / kScoreHeadsPerWarp;
  const int stride = n_groups * kScoreHeadsPerWarp + 1;  // odd: a row per thread reads without bank conflicts
  double* rows = dots + kScoreRowsPerBlock * stride;
  float* w = reinterpret_cast<float*>(rows + kScoreRowsPerBlock * p.dim);
  __shared__ const float* row_at[kScoreRowsPerBlock];
  if (n > 0) {
    if (threadIdx.x < n)
      row_at[threadIdx.x] = block_row(b, const_cast<float*>(p.index), p.rows_per_block, p.block_stride, p.dim, s, c0 + threadIdx.x);
    for (int h = threadIdx.x; h < p.heads; h += blockDim.x) w[h] = p.w[t * p.heads + h];
    __syncthreads();
    // Every load of the staging independent of the others, so they are in flight together.
#pragma unroll 4
    for (int e = threadIdx.x; e < n * p.dim; e += blockDim.x) rows[e] = row_at[e / p.dim][e % p.dim];
    __syncthreads();
    for (int g = threadIdx.x >> 5; g < n_groups; g += kScoreWarps) indexer_group_dots(p, t, g, n, rows, dots, stride);
    __syncthreads();
  }
  const int64_t c = c0 + threadIdx.x;
  if (threadIdx.x >= kScoreRowsPerBlock || c >= p.max_rows) return;
  float score = -INFINITY;
  if (c < n_visible) {
    const double* row_dots = dots + threadIdx.x * stride;
    double total = 0.0;
    for (int h = 0; h < p.heads; ++h) {
      const double d = row_dots[h];
      total += static_cast<double>(w[h]) * (d > 0.0 ? d : 0.0);
    }
    score = static_cast<float>(total * static_cast<double>(p.scale));
  }
  p.scores[i * p.max_rows + c] = score;
}

// Orderable key: larger float → larger unsigned key.
__device__ __forceinline__ uint32_t float_key(float f) {
  const uint32_t bits = __float_as_uint(f);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

constexpr int kTopKThreads = 1024;
static_assert(kTopKThreads >= 256, "a thread per histogram bin");

// Radix select of the k-th largest key (4 passes of 8 bits; each pass's bin found by a block scan
// over the histogram), then an in-order compaction of the rows above it plus the lowest-index
// rows equal to it.
__global__ void __launch_bounds__(kTopKThreads) topk_kernel(StepBatch b, TopKParams p) {
  __shared__ int hist[256];
  __shared__ uint32_t s_prefix;
  __shared__ int s_remaining;
  const int64_t i = blockIdx.x;
  const int64_t t = p.tokens[i];
  if (t < 0) return;
  const int64_t n = (static_cast<int64_t>(b.token_pos[t]) + 1) / p.ratio;
  const float* scores = p.scores + i * p.max_rows;
  int32_t* out = p.selected + i * p.k;
  if (n <= p.k) {  // every row (the caller does not select in this case)
    for (int64_t r = threadIdx.x; r < p.k; r += blockDim.x) out[r] = r < n ? static_cast<int32_t>(r) : -1;
    return;
  }
  uint32_t prefix = 0, mask = 0;
  int remaining = p.k;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int k = threadIdx.x; k < 256; k += blockDim.x) hist[k] = 0;
    __syncthreads();
    for (int64_t r = threadIdx.x; r < n; r += blockDim.x) {
      const uint32_t key = float_key(scores[r]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1);
    }
    __syncthreads();
    // The bin holding the remaining-th largest key: walking down from bin 255, the first whose
    // count reaches it (bin 0 if none). Thread i takes bin 255 − i; above = counts of higher bins.
    const int bin = 255 - static_cast<int>(threadIdx.x);
    const int count = bin >= 0 ? hist[bin] : 0;
    int counted;
    const int above = block_exclusive_scan(count, &counted);
    if (bin >= 0 && above < remaining && (above + count >= remaining || bin == 0)) {
      s_remaining = remaining - above;
      s_prefix = prefix | (static_cast<uint32_t>(bin) << shift);
    }
    __syncthreads();
    remaining = s_remaining;
    prefix = s_prefix;
    mask |= 255u << shift;
    __syncthreads();
  }
  // prefix = the k-th largest key; take every key above it and the first `remaining` equal ones.
  int eq_before = 0, taken_before = 0;
  for (int64_t base = 0; base < n; base += blockDim.x) {
    const int64_t r = base + threadIdx.x;
    const uint32_t key = r < n ? float_key(scores[r]) : 0u;
    const bool eq = r < n && key == prefix;
    int eq_total, take_total;
    const int eq_rank = eq_before + block_exclusive_scan(eq ? 1 : 0, &eq_total);
    const bool take = r < n && (key > prefix || (eq && eq_rank < remaining));
    const int at = taken_before + block_exclusive_scan(take ? 1 : 0, &take_total);
    if (take) out[at] = static_cast<int32_t>(r);
    eq_before += eq_total;
    taken_before += take_total;
  }
}

__global__ void attention_kernel(StepBatch b, LayerKv kv, AttentionParams p) {
  extern __shared__ unsigned char att_smem[];
  const int hd = kv.head_dim;
  float* q = reinterpret_cast<float*>(att_smem);                       // [hd]
  const float** rows = reinterpret_cast<const float**>(q + ((hd + 1) & ~1));  // [max_rows]
  float* score = reinterpret_cast<float*>(rows + p.max_rows);          // [max_rows]
  const int64_t t = blockIdx.x;
  const int h = blockIdx.y;
  const int s = b.token_seq[t];
  const int64_t pos = b.token_pos[t], start = b.seq_start[s];
  const int64_t lo = raw_window_lo(b, kv, s, pos);
  const int64_t n_raw = pos - lo + 1;
  const int sel = p.sel_of_token ? p.sel_of_token[t] : -1;
  const int64_t n_comp = kv.ratio == 0 ? 0 : (sel >= 0 ? p.top_k : (pos + 1) / kv.ratio);
  const int64_t n_rows = n_raw + n_comp;
  const float* qh = p.q + (t * p.heads + h) * hd;
  for (int i = threadIdx.x; i < hd; i += blockDim.x) q[i] = qh[i];
  for (int64_t r = threadIdx.x; r < n_rows; r += blockDim.x) {
    const float* row;
    if (r < n_raw) {
      const int64_t qp = lo + r;
      row = qp < start ? raw_ring_row(kv, b.seq_slot[s], qp) : p.rawq + (t - (pos - qp)) * hd;
    } else {
      const int64_t c = sel >= 0 ? p.selected[static_cast<int64_t>(sel) * p.top_k + (r - n_raw)] : r - n_raw;
      row = block_row(b, kv.comp, kv.rows_per_block, kv.comp_block_stride, hd, s, c);
    }
    rows[r] = row;
  }
  __syncthreads();
  const float scale = 1.0f / sqrtf(static_cast<float>(hd));
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int64_t r = warp; r < n_rows; r += blockDim.x / 32) {
    float d = 0.0f;
    for (int i = lane; i < hd; i += 32) d += q[i] * rows[r][i];
    d = warp_sum(d);
    if (lane == 0) score[r] = d * scale;
  }
  __syncthreads();
  const float sink = p.sinks[h];
  float mx = sink;
  for (int64_t r = threadIdx.x; r < n_rows; r += blockDim.x) mx = fmaxf(mx, score[r]);
  mx = block_max(mx);
  double den_part = 0.0;
  for (int64_t r = threadIdx.x; r < n_rows; r += blockDim.x) {
    const double e = exp(static_cast<double>(score[r]) - mx);
    score[r] = static_cast<float>(e);
    den_part += e;
  }
  const double den = block_sum(den_part) + exp(static_cast<double>(sink) - mx);
  float* out = p.out + (t * p.heads + h) * hd;
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    double acc = 0.0;
    for (int64_t r = 0; r < n_rows; ++r) acc += static_cast<double>(score[r]) * rows[r][i];
    out[i] = static_cast<float>(acc / den);
  }
}

unsigned blocks_for(int64_t n, int threads = kThreads) { return static_cast<unsigned>((n + threads - 1) / threads); }

size_t attention_smem(int head_dim, int64_t max_rows) {
  return sizeof(float) * ((head_dim + 1) & ~1) + max_rows * (sizeof(float*) + sizeof(float));
}

}  // namespace

void quantize_raw_rows(const RawRowParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.head_dim > 0 && p.nope_dim >= 0 && p.nope_dim % 64 == 0 && p.nope_dim <= p.head_dim,
                     "cuda::quantize_raw_rows", "nope_dim must be a multiple of 64 within head_dim");
  if (p.n_tokens == 0) return;
  quantize_raw_rows_kernel<<<static_cast<unsigned>(p.n_tokens), 128, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("quantize_raw_rows_kernel");
}

// kv with the dense defaults of its strides filled in (attention.h).
LayerKv resolved(LayerKv kv, const char* kernel) {
  if (kv.raw_ring_rows == 0) kv.raw_ring_rows = kv.window;
  DS4_LAUNCH_REQUIRE(kv.raw_ring_rows >= kv.window, kernel, "raw ring smaller than the window");
  if (kv.raw_slot_stride == 0) kv.raw_slot_stride = static_cast<int64_t>(kv.raw_ring_rows) * kv.head_dim;
  if (kv.comp_block_stride == 0) kv.comp_block_stride = static_cast<int64_t>(kv.rows_per_block) * kv.head_dim;
  if (kv.index_block_stride == 0) kv.index_block_stride = static_cast<int64_t>(kv.rows_per_block) * kv.indexer_dim;
  return kv;
}

void store_raw_window(const StepBatch& b, const LayerKv& kv_in, const float* rawq, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(kv_in.window > 0 && kv_in.raw && rawq, "cuda::store_raw_window", "missing ring or rows");
  if (b.n_tokens == 0) return;
  const LayerKv kv = resolved(kv_in, "cuda::store_raw_window");
  store_raw_window_kernel<<<blocks_for(b.n_tokens * kv.head_dim), kThreads, 0, stream>>>(b, kv, rawq);
  DS4_CUDA_LAUNCH_CHECK("store_raw_window_kernel");
}

void compressed_finish(const StepBatch& b, const CompressedFinishParams& p_in, cudaStream_t stream) {
  const char* k = "cuda::compressed_finish";
  CompressedFinishParams p = p_in;
  if (p.block_stride == 0) p.block_stride = static_cast<int64_t>(p.rows_per_block) * p.row_dim;
  DS4_LAUNCH_REQUIRE(p.row_dim > 0 && p.n_pairs > 0 && 2 * p.n_pairs <= p.row_dim && p.rows_per_block > 0, k, "bad shape");
  DS4_LAUNCH_REQUIRE(!p.indexer || (p.row_dim >= 32 && (p.row_dim & (p.row_dim - 1)) == 0), k,
                     "indexer rows must be a power of two >= 32 wide");
  DS4_LAUNCH_REQUIRE(p.indexer || p.nope_dim % 64 == 0, k, "nope_dim must be a multiple of 64");
  const int64_t blocks = p.emit_index ? p.n_index : p.n_emit;
  if (blocks == 0) return;
  DS4_LAUNCH_REQUIRE(p.pooled && p.norm && p.emit_seq && p.emit_row && p.emit_pos && p.freq && p.store, k, "null pointer");
  compressed_finish_kernel<<<static_cast<unsigned>(blocks), 128, sizeof(float) * p.row_dim, stream>>>(b, p);
  DS4_CUDA_LAUNCH_CHECK("compressed_finish_kernel");
}

void hadamard_fp4_rows(float* x, int64_t n_vec, int dim, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(dim >= 32 && (dim & (dim - 1)) == 0, "cuda::hadamard_fp4_rows", "dim must be a power of two >= 32");
  if (n_vec == 0) return;
  hadamard_fp4_rows_kernel<<<static_cast<unsigned>(n_vec), 128, sizeof(float) * dim, stream>>>(x, dim);
  DS4_CUDA_LAUNCH_CHECK("hadamard_fp4_rows_kernel");
}

void fp8_rows(float* x, int64_t n_rows, int64_t row_stride, int nope_dim, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(nope_dim % 64 == 0 && nope_dim <= row_stride, "cuda::fp8_rows", "nope_dim must be a multiple of 64");
  if (n_rows == 0) return;
  fp8_rows_kernel<<<static_cast<unsigned>(n_rows), 32, 0, stream>>>(x, row_stride, nope_dim);
  DS4_CUDA_LAUNCH_CHECK("fp8_rows_kernel");
}

void indexer_scores(const StepBatch& b, const IndexerScoreParams& p_in, cudaStream_t stream) {
  const char* k = "cuda::indexer_scores";
  IndexerScoreParams p = p_in;
  if (p.block_stride == 0) p.block_stride = static_cast<int64_t>(p.rows_per_block) * p.dim;
  DS4_LAUNCH_REQUIRE(p.heads > 0 && p.dim > 0 && p.ratio > 0 && p.rows_per_block > 0 && p.max_rows > 0, k, "bad shape");
  DS4_LAUNCH_REQUIRE(p.dim <= kScoreMaxDim, k, "indexer rows wider than " + std::to_string(kScoreMaxDim));
  if (p.n_sel == 0) return;
  const int stride = (p.heads + kScoreHeadsPerWarp - 1) / kScoreHeadsPerWarp * kScoreHeadsPerWarp + 1;
  const size_t smem = sizeof(double) * (stride + p.dim) * kScoreRowsPerBlock + sizeof(float) * p.heads;
  DS4_LAUNCH_REQUIRE(smem <= 96 * 1024, k, "too many indexer heads for shared memory");
  DS4_CUDA_CHECK(cudaFuncSetAttribute(indexer_scores_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 96 * 1024));
  const dim3 grid(static_cast<unsigned>(p.n_sel), blocks_for(p.max_rows, kScoreRowsPerBlock));
  indexer_scores_kernel<<<grid, kScoreWarps * 32, smem, stream>>>(b, p);
  DS4_CUDA_LAUNCH_CHECK("indexer_scores_kernel");
}

void indexer_top_k(const StepBatch& b, const TopKParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.k > 0 && p.ratio > 0 && p.max_rows > 0, "cuda::indexer_top_k", "bad shape");
  if (p.n_sel == 0) return;
  topk_kernel<<<static_cast<unsigned>(p.n_sel), kTopKThreads, 0, stream>>>(b, p);
  DS4_CUDA_LAUNCH_CHECK("topk_kernel");
}

void attention(const StepBatch& b, const LayerKv& kv_in, const AttentionParams& p, cudaStream_t stream) {
  const char* k = "cuda::attention";
  const LayerKv kv = resolved(kv_in, k);
  DS4_LAUNCH_REQUIRE(p.heads > 0 && kv.head_dim > 0 && kv.window > 0 && p.max_rows > 0, k, "bad shape");
  DS4_LAUNCH_REQUIRE(kv.ratio == 0 || kv.rows_per_block > 0, k, "compressed layer without block geometry");
  DS4_LAUNCH_REQUIRE(!p.sel_of_token || (p.selected && p.top_k > 0), k, "selection without rows");
  if (b.n_tokens == 0) return;
  const size_t smem = attention_smem(kv.head_dim, p.max_rows);
  DS4_LAUNCH_REQUIRE(smem <= kMaxAttentionSmem, k,
                     "too many attended rows for one block: " + std::to_string(p.max_rows));
  DS4_CUDA_CHECK(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(kMaxAttentionSmem)));
  const dim3 grid(static_cast<unsigned>(b.n_tokens), static_cast<unsigned>(p.heads));
  attention_kernel<<<grid, kThreads, smem, stream>>>(b, kv, p);
  DS4_CUDA_LAUNCH_CHECK("attention_kernel");
}

}  // namespace ds4::cuda
