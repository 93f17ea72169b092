// compressor_update (attention.h): the compressors' frontier update and pooling. Steps of more
// than kWalkTokensPerSeq tokens per sequence on average (prefill) without an undo log run in
// parallel: every emitted window is pooled by one thread per (emitting token, output dim) from the
// step's projections and the frontier as it was before the step, then one thread per (sequence,
// frontier column) writes the frontier's final state. Both read the values the token-order walk
// would have read, so pooled rows and frontiers keep its bits. Other steps (decode, speculative
// steps with their undo log) walk the tokens in order: one thread per output dim, which owns its
// columns, so no synchronisation is needed.
#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/quant_decode.cuh"

namespace ds4::cuda {
namespace {

constexpr int kCompressorThreads = 128;
constexpr int kWalkTokensPerSeq = 4;  // steps of at most this many tokens per sequence walk them in order

unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kCompressorThreads - 1) / kCompressorThreads); }

// Element c of row phi of the compressor's position bias (any non-IQ2 weight format).
__device__ float ape_value(const CompressorParams& p, int phi, int c) {
  const uint8_t* row = p.ape + static_cast<uint64_t>(phi) * p.ape_row_bytes;
  switch (p.ape_type) {
    case GgmlType::F32: return __uint_as_float(ld_u32(row + 4 * c));
    case GgmlType::F16: return half_bits_to_float(ld_u16(row + 2 * c));
    case GgmlType::BF16: return __uint_as_float(ld_u16(row + 2 * c) << 16);
    default: break;
  }
  float w[32];
  if (p.ape_type == GgmlType::Q8_0) decode_row_unit<GgmlType::Q8_0>(row, c / 32, w, nullptr);
  else if (p.ape_type == GgmlType::Q2_K) decode_row_unit<GgmlType::Q2_K>(row, c / 32, w, nullptr);
  else decode_row_unit<GgmlType::Q4_K>(row, c / 32, w, nullptr);
  float v = 0.0f;
#pragma unroll
  for (int i = 0; i < 32; ++i) v = (i == c % 32) ? w[i] : v;
  return v;
}

// Softmax-weighted mean over n candidates (cpu_compressor.cpp pool_dim); candidate(i, &kv, &score).
template <typename Candidate>
__device__ float pool_candidates(int n, Candidate candidate) {
  float mx = -INFINITY, kv, score;
  for (int i = 0; i < n; ++i) candidate(i, kv, score), mx = fmaxf(mx, score);
  if (!(mx > -INFINITY)) return 0.0f;
  double num = 0.0, den = 0.0;
  for (int i = 0; i < n; ++i) {
    candidate(i, kv, score);
    const double e = exp(static_cast<double>(score) - mx);
    num += e * kv;
    den += e;
  }
  return static_cast<float>(num / den);
}

// Rows of a sequence's frontier: ratio 4 keeps the previous window (rows 0..3, both halves) and
// the current one (rows 4..7); other ratios the current window (rows 0..R-1), one half.
struct Frontier {
  float *kv, *score;
  int R, D, W;
};

__device__ Frontier frontier_of(const StepBatch& b, const CompressorParams& p, int s) {
  const int R = p.ratio, D = p.row_dim;
  const int W = (R == 4 ? 2 : 1) * D, rows = R == 4 ? 8 : R;
  const int64_t stride = p.frontier_slot_stride > 0 ? p.frontier_slot_stride : static_cast<int64_t>(rows) * W;
  const int64_t at = static_cast<int64_t>(b.seq_slot[s]) * stride;
  return {p.frontier_kv + at, p.frontier_score + at, R, D, W};
}

// Column c of the step's token at position pos (phase phi = pos mod R) of sequence s: its kv and
// score (gate + bias).
__device__ __forceinline__ void step_value(const StepBatch& b, const CompressorParams& p, int s, int64_t pos, int phi, int W,
                                           int c, float& kv, float& score) {
  const int64_t t = b.seq_first[s] + (pos - b.seq_start[s]);
  kv = p.kv_proj[t * W + c];
  score = p.gate_proj[t * W + c] + ape_value(p, phi, c);
}

// Pools the window ending at the token's position, for output dim j.
__global__ void compressor_pool_kernel(StepBatch b, CompressorParams p) {
  const int64_t t = blockIdx.x;
  const int j = blockIdx.y * blockDim.x + threadIdx.x;
  const int e = p.emit_index[t];
  if (e < 0 || j >= p.row_dim) return;
  const int s = b.token_seq[t];
  const int64_t end_pos = b.token_pos[t], start = b.seq_start[s];
  const Frontier f = frontier_of(b, p, s);
  const int R = f.R, D = f.D, W = f.W;
  // Candidate at position pos (phase phi), column c: from the step, else from frontier row `row`
  // as it was before the step.
  auto value = [&](int64_t pos, int phi, int row, int c, float& kv, float& score) {
    if (pos >= start) return step_value(b, p, s, pos, phi, W, c, kv, score);
    kv = f.kv[row * W + c], score = f.score[row * W + c];
  };
  float pooled;
  if (R == 4) {  // the previous window's first halves, then the current window's second halves
    const bool prev_in_step = end_pos - 4 >= start;  // its rows 0..3 are then copies of rows 4..7
    pooled = pool_candidates(8, [&](int i, float& kv, float& score) {
      if (i < 4) value(end_pos - 7 + i, i, prev_in_step ? 4 + i : i, j, kv, score);
      else value(end_pos - 7 + i, i - 4, i, D + j, kv, score);
    });
  } else {
    pooled = pool_candidates(R, [&](int i, float& kv, float& score) { value(end_pos - R + 1 + i, i, i, j, kv, score); });
  }
  p.pooled[static_cast<int64_t>(e) * D + j] = pooled;
}

// The frontier after the step, column c of sequence s: each current-window row holds the last
// token of its phase; for ratio 4, rows 0..3 the current window at the step's last emission.
__global__ void compressor_state_kernel(StepBatch b, CompressorParams p) {
  const int s = blockIdx.x;
  const int count = b.seq_count[s];
  const Frontier f = frontier_of(b, p, s);
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (count == 0 || c >= f.W) return;
  const int R = f.R, cur0 = R == 4 ? 4 : 0;
  const int64_t start = b.seq_start[s], last = start + count - 1;
  if (R == 4) {
    const int64_t emit = last - (last + 1) % 4;  // the last position closing a window
    if (emit >= start) {
      float kv[4], score[4];
      for (int r = 0; r < 4; ++r) {
        const int64_t pos = emit - 3 + r;
        if (pos >= start) step_value(b, p, s, pos, r, f.W, c, kv[r], score[r]);
        else kv[r] = f.kv[(4 + r) * f.W + c], score[r] = f.score[(4 + r) * f.W + c];
      }
      for (int r = 0; r < 4; ++r) f.kv[r * f.W + c] = kv[r], f.score[r * f.W + c] = score[r];
    }
  }
  const int last_phi = static_cast<int>(last % R);
  for (int phi = 0; phi < R; ++phi) {
    const int64_t pos = last - (last_phi - phi + R) % R;  // the last position of phase phi
    if (pos < start) continue;
    float kv, score;
    step_value(b, p, s, pos, phi, f.W, c, kv, score);
    f.kv[(cur0 + phi) * f.W + c] = kv, f.score[(cur0 + phi) * f.W + c] = score;
  }
}

// The token-order walk (undo-logged steps).
__global__ void compressor_kernel(StepBatch b, CompressorParams p) {
  const int j = blockIdx.y * blockDim.x + threadIdx.x;
  if (j >= p.row_dim) return;
  const int s = blockIdx.x, R = p.ratio, D = p.row_dim;
  const int W = (R == 4 ? 2 : 1) * D, rows = R == 4 ? 8 : R;
  const int64_t slot_stride = p.frontier_slot_stride > 0 ? p.frontier_slot_stride : static_cast<int64_t>(rows) * W;
  float* fkv = p.frontier_kv + static_cast<int64_t>(b.seq_slot[s]) * slot_stride;
  float* fsc = p.frontier_score + static_cast<int64_t>(b.seq_slot[s]) * slot_stride;
  const int first = b.seq_first[s], count = b.seq_count[s];
  const int64_t start = b.seq_start[s];
  const int n_cols = R == 4 ? 2 : 1;
  const int u = p.undo && p.undo_seq ? p.undo_seq[s] : -1;
  // Saves entry e (row, half k) of token i before it is overwritten (undo log, attention.h).
  auto save = [&](int i, int e, int row, int k) {
    float* at = p.undo + ((static_cast<int64_t>(u) * p.undo_tokens + i) * kUndoEntries + e) * 2 * D + j;
    at[0] = fkv[row * W + k * D + j];
    at[D] = fsc[row * W + k * D + j];
  };
  for (int i = 0; i < count; ++i) {
    const int64_t t = first + i, pos = start + i;
    const int phi = static_cast<int>(pos % R);
    const int slot_row = R == 4 ? 4 + phi : phi;
    if (u >= 0) {
      for (int k = 0; k < n_cols; ++k) save(i, k, slot_row, k);
      if (R == 4 && (pos + 1) % R == 0)
        for (int r = 0; r < 4; ++r)
          for (int k = 0; k < 2; ++k) save(i, 2 + 2 * r + k, r, k);
    }
    for (int k = 0; k < n_cols; ++k) {
      const int c = j + k * D;
      fkv[slot_row * W + c] = p.kv_proj[t * W + c];
      fsc[slot_row * W + c] = p.gate_proj[t * W + c] + ape_value(p, phi, c);
    }
    if ((pos + 1) % R != 0) continue;
    float pooled;
    if (R == 4) {
      float kv[8], sc[8];
      for (int r = 0; r < 4; ++r) {
        kv[r] = fkv[r * W + j];
        sc[r] = fsc[r * W + j];
        kv[4 + r] = fkv[(4 + r) * W + D + j];
        sc[4 + r] = fsc[(4 + r) * W + D + j];
      }
      pooled = pool_candidates(8, [&](int r, float& v, float& score) { v = kv[r], score = sc[r]; });
      for (int r = 0; r < 4; ++r)  // the current window becomes the previous one
        for (int k = 0; k < 2; ++k) {
          fkv[r * W + j + k * D] = fkv[(4 + r) * W + j + k * D];
          fsc[r * W + j + k * D] = fsc[(4 + r) * W + j + k * D];
        }
    } else {
      pooled = pool_candidates(R, [&](int r, float& v, float& score) { v = fkv[r * W + j], score = fsc[r * W + j]; });
    }
    p.pooled[static_cast<int64_t>(p.emit_index[t]) * D + j] = pooled;
  }
}

}  // namespace

void compressor_update(const StepBatch& b, const CompressorParams& p, cudaStream_t stream) {
  const char* k = "cuda::compressor_update";
  DS4_LAUNCH_REQUIRE(p.ratio >= 2 && p.row_dim > 0, k, "ratio must be >= 2");
  const bool ape_ok = p.ape_type == GgmlType::F32 || p.ape_type == GgmlType::F16 || p.ape_type == GgmlType::BF16 ||
                      p.ape_type == GgmlType::Q8_0 || p.ape_type == GgmlType::Q2_K || p.ape_type == GgmlType::Q4_K;
  DS4_LAUNCH_REQUIRE(ape_ok, k,
                     "unsupported compressor_ape type " + std::string(ggml_type_name(p.ape_type)));
  DS4_LAUNCH_REQUIRE(p.kv_proj && p.gate_proj && p.ape && p.frontier_kv && p.frontier_score && p.emit_index, k,
                     "null pointer");
  if (b.n_seqs == 0) return;
  if (p.undo || b.n_tokens <= kWalkTokensPerSeq * b.n_seqs) {
    compressor_kernel<<<dim3(static_cast<unsigned>(b.n_seqs), blocks_for(p.row_dim)), kCompressorThreads, 0, stream>>>(b, p);
    DS4_CUDA_LAUNCH_CHECK("compressor_kernel");
    return;
  }
  if (b.n_tokens == 0) return;
  compressor_pool_kernel<<<dim3(static_cast<unsigned>(b.n_tokens), blocks_for(p.row_dim)), kCompressorThreads, 0, stream>>>(b, p);
  DS4_CUDA_LAUNCH_CHECK("compressor_pool_kernel");
  const int width = (p.ratio == 4 ? 2 : 1) * p.row_dim;
  compressor_state_kernel<<<dim3(static_cast<unsigned>(b.n_seqs), blocks_for(width)), kCompressorThreads, 0, stream>>>(b, p);
  DS4_CUDA_LAUNCH_CHECK("compressor_state_kernel");
}

}  // namespace ds4::cuda
