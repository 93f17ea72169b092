// Internal to engine/cuda/cuda_backend*.cpp: the per-step plan (the ragged batch flattened into
// device index arrays: tokens, sequences, block tables, compressed-row emissions per ratio,
// indexer queries, logit rows) and the scratch arena of activations, sized for the step.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "kernels/cuda/attention.h"

namespace ds4 {

// Compressed rows emitted this step by the layers of one ratio (same for all such layers).
struct RatioPlan {
  int ratio = 0;
  int64_t n_emit = 0;
  const int32_t* emit_index = nullptr;  // [T] -1 or row of the pooled buffer
  const int32_t* emit_seq = nullptr;    // [n_emit]
  const int32_t* emit_row = nullptr;    // [n_emit] compressed row index
  const int32_t* emit_pos = nullptr;    // [n_emit] first position of the window (RoPE)
  int64_t max_comp_rows = 0;            // most compressed rows a token attends to
};

// Steps whose routed-expert products read their activations split once into bf16 planes
// (Scratch::x_planes, cuda::split_x_planes) instead of in every warp: 4 to 256 tokens (decode
// batches: the split's launch costs about what it saves at 1 token, 7% of the expert products at
// 16-64; the bits are the same either way). DS4_X_PLANES=0 turns it off (A/B runs).
bool expert_x_planes(int64_t n_tokens);

struct CudaBackend::Plan {
  int64_t n_tokens = 0;
  int n_seqs = 0;
  int64_t n_logit_rows = 0;
  cuda::StepBatch batch;
  const int32_t* tokens = nullptr;      // [T] token ids
  const int32_t* logit_rows = nullptr;  // [n_logit_rows] token indices
  std::vector<RatioPlan> ratios;
  // Indexer queries (CSA layers): tokens with more visible rows than top_k.
  int64_t n_sel = 0;
  const int32_t* sel_tokens = nullptr;    // [n_sel]
  const int32_t* sel_of_token = nullptr;  // [T] -1 or index into sel_tokens
  int64_t max_sel_rows = 0;               // most visible rows of a selecting token
  int64_t max_emit = 0;
  std::vector<int64_t> first_row, n_rows;  // per sequence, into the logits
  // Rows of the routed experts: the step's tokens, or under data-parallel attention every rank's
  // tokens, each rank's block padded to rank_rows (the busiest rank's count): moe_rows = world ×
  // rank_rows (engine/cuda/cuda_data_parallel.cpp).
  int64_t rank_rows = 0, moe_rows = 0;
  const RatioPlan& for_ratio(int ratio) const;
};

// Offsets of the plan's arrays in Scratch::plan_host (int32 elements).
struct CudaBackend::PlanOffsets {
  size_t tok = 0, pos = 0, seq = 0, first = 0, count = 0, start = 0, slot = 0, table = 0;
  std::vector<std::array<size_t, 4>> ratio;  // emit_index, emit_seq, emit_row, emit_pos
  size_t sel = 0, sel_of = 0, rows = 0;
};

// Activations of one step ([rows, width] f32 unless noted), carved from one device buffer.
struct CudaBackend::Scratch {
  cuda::DeviceBuffer plan;   // the plan's int32 arrays
  std::vector<int32_t> plan_host;
  cuda::DeviceBuffer arena;
  float *states = nullptr, *states_next = nullptr, *flat = nullptr;  // [T, hc·n]
  float *mix = nullptr, *coef = nullptr;                             // [T, mix_dim]
  float *x = nullptr, *normed = nullptr, *y = nullptr;               // [T, n]
  float *q_lora = nullptr, *q = nullptr, *kv = nullptr, *rawq = nullptr, *heads = nullptr, *low = nullptr;
  float *comp_kv = nullptr, *comp_gate = nullptr, *pooled = nullptr;
  float *idx_kv = nullptr, *idx_gate = nullptr, *idx_pooled = nullptr, *idx_q = nullptr, *idx_w = nullptr;
  float* idx_scores = nullptr;
  int32_t* idx_selected = nullptr;
  float *router_logits = nullptr, *route_weights = nullptr;
  int32_t *experts = nullptr, *group_offsets = nullptr, *token_rows = nullptr, *slot_rows = nullptr;
  int32_t *active_experts = nullptr, *n_active = nullptr;  // experts with tokens this layer, and how many
  int32_t* n_active_layers = nullptr;  // [n_layer]: n_active points at layer il's entry (metrics)
  float *ffn_gate = nullptr, *ffn_up = nullptr, *ffn_mid = nullptr, *expert_out = nullptr;
  uint8_t* x_planes = nullptr;  // expert_x_planes steps: normed, then ffn_mid, split (cuda::split_x_planes)
  float *sh_gate = nullptr, *sh_up = nullptr, *sh_mid = nullptr, *sh_out = nullptr;
  float* ep_sum = nullptr;  // [moe_rows, n_embd] routed sums, all-reduced (or reduce-scattered) under expert parallelism
  // Data-parallel attention: the own rows padded to a rank's block ([rank_rows, n]; token ids
  // [rank_rows]), every rank's blocks gathered ([moe_rows, n]; [moe_rows]) and the own block of
  // the reduce-scattered routed sums ([rank_rows, n]).
  float *dp_send = nullptr, *dp_x = nullptr, *dp_own = nullptr;
  int32_t *dp_token_send = nullptr, *dp_tokens = nullptr;
  float *head_states = nullptr, *head_flat = nullptr, *head_mix = nullptr, *head_h = nullptr, *logits = nullptr;
};

}  // namespace ds4
