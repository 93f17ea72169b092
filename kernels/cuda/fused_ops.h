// Fused forward-pass ops for the CUDA step: each kernel here replaces a chain of ops.h /
// attention.h launches with the same arithmetic (same reduction trees where the old chain had
// one), so the step launches fewer, larger kernels:
//   hc_boundary (post of one sub-layer + RMSNorm/fn partial sums of the next) and hc_finish
//   (coefficients, Sinkhorn, pre-mix, RMSNorm with weight): 6 launches → 2 per sub-layer;
//   q_heads_norm_rope, kv_norm_rope_quant (raw-row FP8/f16 storage), indexer_q_rope_qat;
//   route_and_group (router + grouping by expert in one launch, last block groups);
//   swiglu_pair (routed and shared expert activations in one launch).
// Results are per token, independent of the batch. Called by engine/cuda (CudaBackend) and
// tests/cuda/cuda_fused_test.cpp (which checks each against the unfused chain).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/ops.h"
#include "kernels/ggml_type.h"

namespace ds4::cuda {

constexpr int kHcChunk = 512;   // flat state values per block of hc_boundary
constexpr int kHcMaxMix = 24;   // (2 + hc)·hc for hc = 4, the fused path's limit

// Partial sums of one hyper-connection boundary, per token and chunk of kHcChunk flat values:
// when prev_coef is set, first states_out = hc_post(prev_coef, states, y) with
// y = Σ_slot expert_out[t·k + slot] + shared (moe_combine's order) or the given y; then, when
// fn is set, partial[t, chunk] = {Σ h², Σ fn[o]·h for o < mix_dim} over the chunk's values of
// the (new) state h, in f64 with a fixed reduction tree.
struct HcBoundaryParams {
  const float* prev_coef = nullptr;   // [T, mix_dim] coefficients of the finished sub-layer, or null
  const float* states = nullptr;      // [T, hc, n_embd]
  const float* y = nullptr;           // [T, n_embd] sub-layer output (attention), or null
  const float* expert_out = nullptr;  // [T·k, n_embd] routed outputs (MoE) when y is null
  const float* shared = nullptr;      // [T, n_embd] shared expert output (MoE)
  int k = 0;
  float* states_out = nullptr;        // [T, hc, n_embd] (must not alias states) when prev_coef is set
  const uint8_t* fn = nullptr;        // mix_dim rows of hc·n_embd values (F16 or F32), or null
  GgmlType fn_type = GgmlType::F16;
  uint64_t fn_row_bytes = 0;
  double* partial = nullptr;          // [T, n_chunks, 1 + mix_dim]
  int64_t n_tokens = 0, n_embd = 0;
  int hc = 4, mix_dim = 24;
};
void hc_boundary(const HcBoundaryParams& p, cudaStream_t stream);
int64_t hc_boundary_chunks(int64_t hc_width);  // chunks of kHcChunk per token

// Finishes a boundary per token: mix = (Σ_chunks dot) / rms(state) → coef (pre, post, Sinkhorn
// comb) written to coef; normed = RMSNorm(Σ_s pre[s]·state[s]; weight).
struct HcFinishParams {
  const double* partial = nullptr;  // from hc_boundary
  const float* states = nullptr;    // [T, hc, n_embd] (the boundary's new states)
  const float* scale = nullptr;     // [3]
  const float* base = nullptr;      // [mix_dim]
  float* coef = nullptr;            // [T, mix_dim]
  const float* norm_weight = nullptr;  // [n_embd]
  float* normed = nullptr;          // [T, n_embd]
  int64_t n_tokens = 0, n_embd = 0;
  int hc = 4, mix_dim = 24, sinkhorn_iters = 20;
  float hc_eps = 1e-6f, rms_eps = 1e-6f;
};
void hc_finish(const HcFinishParams& p, cudaStream_t stream);

// Each head of q: RMSNorm without weight, then RoPE of its tail at the token's position (in place).
struct HeadNormRopeParams {
  float* x = nullptr;              // [T, heads, head_dim]
  int64_t n_tokens = 0;
  int heads = 0, head_dim = 0;
  float eps = 1e-6f;
  const int32_t* pos = nullptr;    // [T]
  const double* freq = nullptr;    // [n_pairs]
  int n_pairs = 0;
};
void q_heads_norm_rope(const HeadNormRopeParams& p, cudaStream_t stream);

// The raw KV row of each token: RMSNorm(kv; weight) → RoPE → storage quantisation (FP8 on
// [0, nope) + f16 rounding of all values when quantize) into rawq.
struct KvRowParams {
  const float* kv = nullptr;       // [T, head_dim] projection output
  const float* weight = nullptr;   // [head_dim]
  float* rawq = nullptr;           // [T, head_dim]
  int64_t n_tokens = 0;
  int head_dim = 0, nope_dim = 0;
  float eps = 1e-6f;
  const int32_t* pos = nullptr;
  const double* freq = nullptr;
  int n_pairs = 0;
  bool quantize = true;
};
void kv_norm_rope_quant(const KvRowParams& p, cudaStream_t stream);

// Indexer query heads: RoPE of each head's tail, then Hadamard + FP4 when quantize (in place).
struct IndexerQParams {
  float* q = nullptr;              // [T, heads, dim], dim a power of two ≥ 32
  int64_t n_tokens = 0;
  int heads = 0, dim = 0;
  const int32_t* pos = nullptr;
  const double* freq = nullptr;
  int n_pairs = 0;
  bool quantize = true;
};
void indexer_q_rope_qat(const IndexerQParams& p, cudaStream_t stream);

// route() and moe_group() in one launch: one block per token routes; the last block to finish
// groups the assignments. counter is a device int that must be 0 before the first call (the
// kernel leaves it 0).
void route_and_group(const RouterParams& r, const MoeGroupParams& g, int32_t* counter, cudaStream_t stream);

// Two swiglu() calls in one launch (a: routed experts, b: shared expert).
void swiglu_pair(const SwigluParams& a, const SwigluParams& b, cudaStream_t stream);

}  // namespace ds4::cuda
