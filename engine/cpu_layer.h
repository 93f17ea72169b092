// Internal interface between the CPU backend's orchestrator (cpu_backend.cpp) and its sub-layers
// (cpu_attention.cpp, cpu_compressor.cpp, cpu_moe.cpp, cpu_moe_dispatch.cpp). Not used outside the CPU backend.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/expert_parallel.h"
#include "engine/forward.h"
#include "engine/kv_undo.h"
#include "engine/model_config.h"
#include "engine/rope.h"
#include "engine/weights.h"
#include "kernels/thread_pool.h"

namespace ds4 {

struct TokenRef {
  int seq;        // index into the batch's sequences
  int64_t pos;    // absolute position
  int32_t token;  // token id
};

// Per-pass counters the sub-layers add to (ForwardOutput::unique_experts / weight_bytes_read).
struct ForwardCounters {
  int64_t unique_experts = 0;
  int64_t expert_bytes = 0;  // bytes of the distinct experts read
};

// Everything one sub-layer evaluation needs. Layer properties are explicit fields (not looked up
// in the config by index) so the MTP block can run with its own (raw-window, learned routing).
struct LayerContext {
  const ModelConfig& config;
  const LayerWeights& w;
  const ForwardOptions& options;
  ThreadPool& pool;
  const RopeFrequencies& rope;  // this layer's RoPE
  int layer;                    // index of the layer's state in each SequenceKv
  int ratio;                    // compress ratio: 0 raw window only, 4 CSA (with indexer), else HCA
  bool hash_routing;            // experts from the token-id table instead of the router's top-k
  float swiglu_limit;           // SwiGLU clamp of this layer
  bool sparse() const { return ratio == 4; }
  const std::vector<TokenRef>& tokens;  // grouped by sequence, positions increasing
  const std::vector<SequenceKv*>& kv;   // per sequence
  // Per sequence: where to save rows before overwriting them (speculative inputs), else null.
  const std::vector<KvUndoLog*>& undo;
  KvUndoLog* undo_log(int seq) const { return undo.empty() ? nullptr : undo[seq]; }
  ForwardCounters* counters = nullptr;  // what the pass read (may be null)
  // Expert parallelism: the MoE sub-layer computes only this rank's experts and all-reduces the
  // routed sum (replicated mode) or exchanges routes with their owners (data-parallel mode) before
  // adding the shared expert (null or inactive: every expert, no collective).
  const ExpertParallel* experts = nullptr;
};

// One (token, expert) choice of the router with its route weight; a layer's routes are listed in
// token order, then in the router's choice order.
struct ExpertRoute {
  int64_t token;  // index into LayerContext::tokens
  int expert;     // global expert id
  float weight;
};

// Routed expert `expert` (global id, of ctx.w) over the rows of x ([rows, n_embd]), each scaled by its
// route weight inside the SwiGLU: out [rows, n_embd]. Each row's result is independent of the others.
void routed_expert_rows(const LayerContext& ctx, int expert, const std::vector<float>& x, const std::vector<float>& weights,
                        std::vector<float>& out);
// Adds one distinct routed expert to the pass's counters (when there are counters).
void count_routed_expert(const LayerContext& ctx, int expert);
// Data-parallel mode (cpu_moe_dispatch.cpp): y[t] = sum of token t's routed outputs in expert-id
// order, every route computed on its expert's owner rank (dispatch and combine all-to-alls). Every
// rank must call it once per MoE layer, also with no tokens. Throws CommError.
void routed_experts_data_parallel(const LayerContext& ctx, const std::vector<float>& normed,
                                  const std::vector<ExpertRoute>& routes, float* y);

// Attention sub-layer: y[t] from x[t] ([n_tokens, n_embd] each), updating each sequence's KV.
void attention_sublayer(const LayerContext& ctx, const float* x, float* y);
// MoE sub-layer (routed experts + shared expert): y[t] from x[t].
void moe_sublayer(const LayerContext& ctx, const float* x, float* y);

// Compressor step for one token (MODEL.md 2.2): writes the projected kv / gate of position pos into
// the frontier and, when pos closes a window, returns true with the pooled row (row_dim values) in
// out (before the norm, RoPE and quantisation). kv_proj / gate_proj are the token's projections (W values).
bool compressor_step(int ratio, int row_dim, const float* kv_proj, const float* gate_proj, const float* ape,
                     int64_t pos, float* frontier_kv, float* frontier_score, float* out);

// Indexer top-k (MODEL.md 2.3): the k rows with the highest scores among [0, n_rows), ties to the
// lower row index. Returns the selected row indices in increasing order.
// Saves into `log` (for position pos) the frontier rows compressor_step(ratio, row_dim, ..., pos, ...)
// is about to overwrite: the position's own row, and on ratio 4 when pos closes a window the
// previous-window rows the emission replaces.
void compressor_save_undo(int ratio, int row_dim, int64_t pos, float* frontier_kv, float* frontier_score,
                          KvUndoLog& log);

std::vector<int64_t> indexer_top_k(const std::vector<float>& scores, int k);

}  // namespace ds4
