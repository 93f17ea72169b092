// Row-wise GPU ops of the forward pass, each the counterpart of a CPU reference function:
// RMSNorm (kernels/cpu_ops.h), partial RoPE with YaRN (engine/rope.h), SwiGLU with clamp and
// route weight (cpu_moe.cpp), hyper-connection mix + Sinkhorn, pre, post and head collapse
// (engine/hyper_connection.h), router (sqrt-softplus, hash or biased top-k, normalised weights),
// grouping of routed tokens by expert, and the expert combine. Reductions run in f64 or in a fixed
// order, so a row's result never depends on the other rows of the batch. All pointers are device
// pointers; each launcher validates its shapes and launches on the given stream.
// Called by engine/cuda (CudaBackend) and the GPU tests.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ds4::cuda {

// out[r] = x[r] · w / sqrt(mean(x[r]²) + eps), w may be null; out may alias x.
struct RmsNormParams {
  const float* x = nullptr;
  int64_t x_stride = 0;
  float* out = nullptr;
  int64_t out_stride = 0;
  const float* weight = nullptr;  // [width] or null
  int64_t n_rows = 0;
  int64_t width = 0;
  float eps = 1e-6f;
};
void rms_norm(const RmsNormParams& p, cudaStream_t stream);

// Rotates the tail 2·n_pairs values of each row (interleaved pairs) by angle pos · freq[j]
// (−angle when inverse). Row r belongs to token r / rows_per_token at position pos[token].
struct RopeParams {
  float* x = nullptr;
  int64_t row_stride = 0;       // floats between rows
  int64_t width = 0;            // row width; the tail starts at width − 2·n_pairs
  int64_t n_rows = 0;
  int64_t rows_per_token = 1;
  const int32_t* pos = nullptr; // [n_rows / rows_per_token]
  const double* freq = nullptr; // [n_pairs] radians per position (RopeFrequencies::freq)
  int n_pairs = 0;
  bool inverse = false;
};
void rope_tail(const RopeParams& p, cudaStream_t stream);

// mid[r, i] = silu(min(g, limit)) · clamp(u, −limit, limit) · weight[r] (weight null: 1).
struct SwigluParams {
  const float* gate = nullptr;
  const float* up = nullptr;
  float* mid = nullptr;
  int64_t n_rows = 0;
  int64_t width = 0;        // all three are [n_rows, width] contiguous
  float limit = 10.0f;
  const float* row_weight = nullptr;  // [n_rows] or null
};
void swiglu(const SwigluParams& p, cudaStream_t stream);

// Hyper-connection coefficients per token from its mix values (fn · normalised state):
// coef[t] = {pre[hc], post[hc], comb[hc·hc]} as in hc_compute_mix (Sinkhorn included).
struct HcCoefParams {
  const float* mix = nullptr;    // [n_tokens, (2 + hc)·hc]
  const float* scale = nullptr;  // [3]
  const float* base = nullptr;   // [(2 + hc)·hc]
  float* coef = nullptr;         // [n_tokens, (2 + hc)·hc]
  int64_t n_tokens = 0;
  int hc = 4;
  int sinkhorn_iters = 20;
  float eps = 1e-6f;
};
void hc_coefficients(const HcCoefParams& p, cudaStream_t stream);

// x[t] = Σ_s pre[s] · H[t, s] (hc_pre) for every token.
struct HcPreParams {
  const float* coef = nullptr;    // [n_tokens, (2 + hc)·hc]
  const float* states = nullptr;  // [n_tokens, hc, n_embd]
  float* x = nullptr;             // [n_tokens, n_embd]
  int64_t n_tokens = 0, n_embd = 0;
  int hc = 4;
};
void hc_pre(const HcPreParams& p, cudaStream_t stream);

// out[t, b] = post[b] · y[t] + Σ_a comb[a][b] · H[t, a] (hc_post; out must not alias states).
struct HcPostParams {
  const float* coef = nullptr;
  const float* states = nullptr;  // [n_tokens, hc, n_embd]
  const float* y = nullptr;       // [n_tokens, n_embd]
  float* out = nullptr;           // [n_tokens, hc, n_embd]
  int64_t n_tokens = 0, n_embd = 0;
  int hc = 4;
};
void hc_post(const HcPostParams& p, cudaStream_t stream);

// Head collapse: h[t] = Σ_i (sigmoid(mix[t, i]·scale[0] + base[i]) + eps) · H[t, i].
struct HcCollapseParams {
  const float* mix = nullptr;     // [n_tokens, hc]
  const float* scale = nullptr;   // [1]
  const float* base = nullptr;    // [hc]
  const float* states = nullptr;  // [n_tokens, hc, n_embd]
  float* out = nullptr;           // [n_tokens, n_embd]
  int64_t n_tokens = 0, n_embd = 0;
  int hc = 4;
  float eps = 1e-6f;
};
void hc_collapse(const HcCollapseParams& p, cudaStream_t stream);

// Router: score = sqrt(softplus(logit)); experts from the token-id table (hash) or the top-k of
// score + bias (ties to the lower id); weight = score / max(Σ selected scores, 2^-14) · scale
// (unnormalised when !normalize). The k (expert, weight) pairs of a token are written sorted by
// expert id (the order the CPU reference accumulates them).
struct RouterParams {
  const float* logits = nullptr;   // [n_tokens, n_expert]
  const float* bias = nullptr;     // [n_expert] or null (top-k mode only)
  const int32_t* hash_table = nullptr;  // [n_vocab, k] (hash mode) or null
  const int32_t* tokens = nullptr; // [n_tokens] token ids (hash mode)
  int32_t* experts = nullptr;      // [n_tokens, k]
  float* weights = nullptr;        // [n_tokens, k]
  int64_t n_tokens = 0;
  int n_expert = 0, k = 0;
  bool normalize = true;
  float scale = 1.5f;
};
void route(const RouterParams& p, cudaStream_t stream);

// Groups the n_tokens·k routed assignments by expert: offsets[e]..offsets[e+1] list expert e's
// assignments in increasing assignment order; token_rows[i] = assignment / k, slot_rows[i] =
// assignment (row of the per-assignment buffers); active lists the experts that got any.
struct MoeGroupParams {
  const int32_t* experts = nullptr;  // [n_tokens, k]
  int64_t n_tokens = 0;
  int k = 0, n_expert = 0;
  int32_t* offsets = nullptr;        // [n_expert + 1]
  int32_t* token_rows = nullptr;     // [n_tokens · k]
  int32_t* slot_rows = nullptr;      // [n_tokens · k]
  int32_t* active = nullptr;         // [n_expert] ids of the experts with tokens, increasing (optional)
  int32_t* n_active = nullptr;       // [1] how many (with active)
};
void moe_group(const MoeGroupParams& p, cudaStream_t stream);

// y[t] = Σ_slot expert_out[t·k + slot] (slot order) + shared[t].
struct MoeCombineParams {
  const float* expert_out = nullptr;  // [n_tokens · k, n_embd]
  const float* shared = nullptr;      // [n_tokens, n_embd]
  float* y = nullptr;                 // [n_tokens, n_embd]
  int64_t n_tokens = 0, n_embd = 0;
  int k = 0;
};
void moe_combine(const MoeCombineParams& p, cudaStream_t stream);

// out[i] = in[rows[i]] (width floats each), i < n_rows.
struct GatherRowsParams {
  const float* in = nullptr;
  int64_t in_stride = 0;
  const int32_t* rows = nullptr;
  float* out = nullptr;
  int64_t out_stride = 0;
  int64_t n_rows = 0, width = 0;
};
void gather_rows(const GatherRowsParams& p, cudaStream_t stream);

// x[0..n) = value.
void fill(float* x, int64_t n, float value, cudaStream_t stream);

}  // namespace ds4::cuda
