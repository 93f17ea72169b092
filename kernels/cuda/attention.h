// GPU attention-side kernels of the forward pass (MODEL.md 1.4, 2.2-2.6) over a ragged batch:
// raw KV row storage quantisation and the raw-window ring, the compressors' frontier update and
// pooling, the compressed-row finish (norm, RoPE, FP8 / Hadamard+FP4) into block-addressed storage,
// indexer scores and top-k, and sink-aware attention over raw + compressed rows. The KV layout is
// the paged one: compressed and indexer rows live in blocks of kKvBlockPositions positions
// addressed through a per-sequence block table; the raw ring and the frontiers in a per-sequence
// slot. Counterparts of engine/cpu_attention.cpp and cpu_compressor.cpp; called by engine/cuda
// and the GPU tests. All pointers are device pointers.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/ggml_type.h"

namespace ds4::cuda {

constexpr int kKvBlockPositions = 256;  // positions per KV block, every layer

// The step's ragged batch: tokens grouped by sequence, positions increasing within a sequence.
struct StepBatch {
  int64_t n_tokens = 0;
  int n_seqs = 0;
  const int32_t* token_seq = nullptr;    // [T] sequence index
  const int32_t* token_pos = nullptr;    // [T] absolute position
  const int32_t* seq_first = nullptr;    // [S] first token index
  const int32_t* seq_count = nullptr;    // [S] new tokens this step
  const int32_t* seq_start = nullptr;    // [S] position of the first new token (= tokens already in the KV)
  const int32_t* seq_slot = nullptr;     // [S] slot of the raw ring and frontiers
  const int32_t* block_table = nullptr;  // [S, max_blocks] block ids of the compressed rows
  int max_blocks = 0;
  // Optional [S]: first position whose raw row exists (an MTP window restarted there); null: 0.
  const int32_t* seq_window_start = nullptr;
};

// One layer's KV storage. Strides are in floats; 0 means dense (the value in brackets), so the
// same kernels address the kvcache/ pool's layout (slots and blocks interleaving all layers).
struct LayerKv {
  float* raw = nullptr;           // slot s's ring at raw + s · raw_slot_stride: position p at row p % raw_ring_rows
  float* comp = nullptr;          // block b's rows at comp + b · comp_block_stride (ratio > 0)
  float* index = nullptr;         // block b's rows at index + b · index_block_stride (ratio 4)
  int window = 0, head_dim = 0, indexer_dim = 0;
  int ratio = 0;                  // 0: raw window only
  int rows_per_block = 0;         // kKvBlockPositions / ratio
  int raw_ring_rows = 0;          // ring rows per slot, >= window [window]
  int64_t raw_slot_stride = 0;    // [raw_ring_rows · head_dim]
  int64_t comp_block_stride = 0;  // [rows_per_block · head_dim]
  int64_t index_block_stride = 0; // [rows_per_block · indexer_dim]
};

// rawq[t] = kv[t] with the raw-row storage quantisation (FP8 on [0, nope) + f16 rounding of all
// values) when quantize, else a copy.
struct RawRowParams {
  const float* kv = nullptr;  // [T, head_dim]
  float* rawq = nullptr;      // [T, head_dim]
  int64_t n_tokens = 0;
  int head_dim = 0, nope_dim = 0;
  bool quantize = true;
};
void quantize_raw_rows(const RawRowParams& p, cudaStream_t stream);

// Stores the step's raw rows that stay in the window (positions ≥ end − window of each sequence)
// into the ring. Must run after every attention of the step has read the ring.
void store_raw_window(const StepBatch& b, const LayerKv& kv, const float* rawq, cudaStream_t stream);

// Compressor frontier update (compressor_step) of every sequence, tokens in order, one thread
// per output dim; when a token closes a window the pooled row (before norm/RoPE) goes to
// pooled[emit_index[t]].
struct CompressorParams {
  int ratio = 0, row_dim = 0;       // width = (ratio == 4 ? 2 : 1) · row_dim
  const float* kv_proj = nullptr;   // [T, width]
  const float* gate_proj = nullptr; // [T, width]
  const uint8_t* ape = nullptr;     // weights [ratio rows of width values]
  GgmlType ape_type = GgmlType::F16;
  uint64_t ape_row_bytes = 0;
  float* frontier_kv = nullptr;     // slot s at frontier_kv + s · frontier_slot_stride: [frontier rows, width]
  float* frontier_score = nullptr;  // same geometry
  int64_t frontier_slot_stride = 0; // floats [frontier rows · width]
  const int32_t* emit_index = nullptr;  // [T] row of pooled, or -1
  float* pooled = nullptr;              // [n_emit, row_dim]
  // Optional undo log (speculative inputs): sequence s with undo_seq[s] = u >= 0 saves, before
  // its token i overwrites them, the frontier entries the token changes at
  // undo + ((((u · undo_tokens + i) · kUndoEntries + e) · 2 + {0: kv, 1: score}) · row_dim):
  // e = k for the written row's half k, e = 2 + 2r + k for row r < 4, half k, of a ratio-4 shift.
  float* undo = nullptr;
  const int32_t* undo_seq = nullptr;    // [S] or null
  int undo_tokens = 0;                  // >= every undo-logged sequence's token count
};
constexpr int kUndoEntries = 10;
void compressor_update(const StepBatch& b, const CompressorParams& p, cudaStream_t stream);

// Finishes emitted rows: RMSNorm(norm) → RoPE at the window's first position → FP8 on the nope
// dims (attention rows) or Hadamard + FP4 (indexer rows) when quantize → store as row
// emit_row[e] of sequence emit_seq[e] in `store` (block-table addressed).
struct CompressedFinishParams {
  const float* pooled = nullptr;     // [n_emit, row_dim]
  int64_t n_emit = 0;
  // Optional: one block per token instead, emitting row emit_index[t] when ≥ 0 (the launch then
  // does not depend on how many rows the step emits, as a replayed CUDA graph needs).
  const int32_t* emit_index = nullptr;  // [n_index] or null
  int64_t n_index = 0;
  int row_dim = 0, nope_dim = 0;
  const float* norm = nullptr;       // [row_dim]
  float eps = 1e-6f;
  const int32_t* emit_seq = nullptr; // [n_emit]
  const int32_t* emit_row = nullptr; // [n_emit] compressed row index c
  const int32_t* emit_pos = nullptr; // [n_emit] RoPE position (first position of the window)
  const double* freq = nullptr;      // [n_pairs]
  int n_pairs = 0;
  bool indexer = false;              // Hadamard + FP4 instead of FP8
  bool quantize = true;
  float* store = nullptr;            // LayerKv::comp or ::index
  int rows_per_block = 0;
  int64_t block_stride = 0;          // floats between blocks [rows_per_block · row_dim]
};
void compressed_finish(const StepBatch& b, const CompressedFinishParams& p, cudaStream_t stream);

// Indexer QAT (Hadamard + FP4) of n_vec vectors of `dim` values, in place.
void hadamard_fp4_rows(float* x, int64_t n_vec, int dim, cudaStream_t stream);
// FP8 round trip of the first nope_dim values of each row (tests and callers that need it alone).
void fp8_rows(float* x, int64_t n_rows, int64_t row_stride, int nope_dim, cudaStream_t stream);

// Indexer scores of the listed tokens over their visible indexer rows c < n_visible(t):
// score = scale · Σ_h w[t, h] · max(0, q[t, h] · k_c), in f64, written as f32 (−inf past n_visible).
struct IndexerScoreParams {
  const int32_t* tokens = nullptr;  // [n_sel] token index of each scored query (< 0: padding, skipped)
  int64_t n_sel = 0;
  const float* q = nullptr;         // [T, heads · dim] (RoPE'd + QAT)
  const float* w = nullptr;         // [T, heads]
  int heads = 0, dim = 0, ratio = 4;
  float scale = 0.0f;
  const float* index = nullptr;     // LayerKv::index
  int rows_per_block = 0;
  int64_t block_stride = 0;         // floats between blocks [rows_per_block · dim]
  float* scores = nullptr;          // [n_sel, max_rows]
  int64_t max_rows = 0;             // ≥ every n_visible
};
void indexer_scores(const StepBatch& b, const IndexerScoreParams& p, cudaStream_t stream);

// Top-k per scored query: the k highest of scores[i, 0..n_visible) (ties to the lower row),
// written in increasing row order to selected[i, 0..k).
struct TopKParams {
  const int32_t* tokens = nullptr;  // [n_sel] (< 0: padding, skipped)
  int64_t n_sel = 0;
  const float* scores = nullptr;    // [n_sel, max_rows]
  int64_t max_rows = 0;
  int ratio = 4, k = 0;
  int32_t* selected = nullptr;      // [n_sel, k]
};
void indexer_top_k(const StepBatch& b, const TopKParams& p, cudaStream_t stream);

// Sink-aware attention of every token and head over its raw window (ring rows before the step,
// rawq rows of the step) and its compressed rows: all visible ones, or selected[sel_of_token[t]]
// when sel_of_token[t] ≥ 0. out[t, h] = Σ_r e^{s_r−m} k_r / (e^{sink_h−m} + Σ_r e^{s_r−m}),
// s_r = q_h · k_r / sqrt(head_dim). No inverse RoPE here.
struct AttentionParams {
  const float* q = nullptr;         // [T, heads, head_dim]
  const float* rawq = nullptr;      // [T, head_dim] this step's raw rows
  const float* sinks = nullptr;     // [heads]
  int heads = 0;
  const int32_t* sel_of_token = nullptr;  // [T] or null (no selection)
  const int32_t* selected = nullptr;      // [n_sel, top_k]
  int top_k = 0;
  float* out = nullptr;             // [T, heads, head_dim]
  int64_t max_rows = 0;             // ≥ rows any token attends to (shared-memory size)
};
void attention(const StepBatch& b, const LayerKv& kv, const AttentionParams& p, cudaStream_t stream);

// The same attention (same rows, same sink softmax, f64 sums) split for speed (attention_split.cu):
// one block per (token, group of 8 heads (4 for steps under 16 tokens or heads not a multiple of
// 8), split of its rows) reads each K=V row once for the group; head_dim at most
// kAttentionMaxHeadDim; a token with n rows uses min(ceil(n / 128), kAttentionMaxSplits) splits (a function of
// its own rows only, so results stay batch invariant), combined by a second kernel that also
// applies the inverse RoPE of the output tail and, when store_raw, stores the step's raw rows
// into the ring (store_raw_window; every ring read of the step is then done). Tokens run in
// chunks of kAttentionChunkTokens through the workspace.
constexpr int kAttentionMaxSplits = 8;
constexpr int kAttentionMaxHeadDim = 512;
constexpr int64_t kAttentionChunkTokens = 128;
struct AttentionSplitExtras {
  float* ws_acc = nullptr;          // [kAttentionChunkTokens, kAttentionMaxSplits, heads, head_dim]
  double* ws_ml = nullptr;          // [kAttentionChunkTokens, kAttentionMaxSplits, heads, 2]
  const double* inv_freq = nullptr; // [n_pairs]: inverse RoPE of the output tail at the token's position; null: none
  int n_pairs = 0;
  bool store_raw = false;
};
size_t attention_split_workspace_bytes(int heads, int head_dim);  // ws_acc + ws_ml, 256-aligned parts
void attention_split(const StepBatch& b, const LayerKv& kv, const AttentionParams& p, const AttentionSplitExtras& x,
                     cudaStream_t stream);

}  // namespace ds4::cuda
