// CudaBackend's step driver (cuda_step.h): the fast-path switches, the CUDA graph of a decode
// step (key, capture, replay) and the head's logits. A step is replayable when every sequence
// brings one token (decode; the plan is then padded and bucketed by build_plan_host so that
// its layout depends on the counts only); other steps are launched kernel by kernel.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_backend_internal.h"
#include "engine/cuda/cuda_step.h"
#include "engine/load_error.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/fused_ops.h"
#include "kernels/cuda/ops.h"

namespace ds4 {
namespace {

constexpr int kMaxGraphSeqs = 512;  // larger decode steps are launched directly

// The fused path needs hc_count ≤ 4 (≤ 24 mix values), F16/F32 mixing weights everywhere and
// heads / head widths that attention_split takes (multiples of 4, rows of at most kAttentionMaxHeadDim).
bool fused_supported(const ModelConfig& c, const DeviceWeights& w) {
  if (c.hc_mix_dim() > cuda::kHcMaxMix || c.n_head % 4 != 0 || c.head_dim % 4 != 0 ||
      c.head_dim > cuda::kAttentionMaxHeadDim)
    return false;
  auto ok = [](const DeviceTensor& t) {
    return (t.type == GgmlType::F16 || t.type == GgmlType::F32) && reinterpret_cast<uintptr_t>(t.data) % 16 == 0 &&
           t.row_bytes % 16 == 0;
  };
  for (const DeviceLayerWeights& l : w.layers)
    if (!ok(l.hc_attn_fn) || !ok(l.hc_ffn_fn)) return false;
  return true;
}

}  // namespace

void CudaBackend::set_step_modes(bool fused_ops, bool cuda_graphs) {
  step_->fused_ops = fused_ops && fused_supported(config_, weights_dev_);
  step_->cuda_graphs = cuda_graphs;
  step_->graphs.clear();
}

// $DS4_CUDA_STEP = plain | fused | graphs overrides the options (GPU checks run one binary in
// every mode); anything else is an error naming the variable.
void CudaBackend::apply_step_env() {
  const char* env = std::getenv("DS4_CUDA_STEP");
  if (!env || !*env) return;
  const std::string mode = env;
  if (mode == "plain") set_step_modes(false, false);
  else if (mode == "fused") set_step_modes(true, false);
  else if (mode == "graphs") set_step_modes(true, true);
  else throw LoadError("DS4_CUDA_STEP must be plain, fused or graphs, not '" + mode + "'");
}

bool CudaBackend::graph_step(const ForwardBatch& batch) const {
  if (!step_->cuda_graphs || batch.sequences.size() > kMaxGraphSeqs) return false;
  return std::all_of(batch.sequences.begin(), batch.sequences.end(),
                     [](const SequenceInput& in) { return in.tokens.size() == 1; });
}

void CudaBackend::prepare_step_buffers(const Plan& plan) {
  StepState& st = *step_;
  if (st.fused_ops) {  // the fused kernels' buffers (none on the op-by-op path)
    const int64_t chunks = cuda::hc_boundary_chunks(int64_t(config_.hc_count) * config_.n_embd);
    st.hc_partial.grow(sizeof(double) * std::max<int64_t>(plan.n_tokens, 1) * chunks * (1 + config_.hc_mix_dim()));
    const int heads = config_.n_head, hd = config_.head_dim;
    st.attn_ws.grow(cuda::attention_split_workspace_bytes(heads, hd));
    st.attn_ws_ml_offset = cuda::attention_split_workspace_bytes(heads, hd) -
                           (size_t(cuda::kAttentionChunkTokens) * cuda::kAttentionMaxSplits * heads * 2 * sizeof(double) + 255) /
                               256 * 256;
  }
  st.pending = StepState::PendingPost::kNone;
}

bool CudaBackend::step_begin(const Plan& plan) {
  StepState& st = *step_;
  prepare_step_buffers(plan);
  if (!st.pad_plan) {
    ++st.stats.eager_steps;
    return false;
  }
  // Cached graphs point into these buffers: a reallocation invalidates them all.
  if (st.graph_arena != scratch_->arena.get() || st.graph_plan != scratch_->plan.get() ||
      st.graph_partial != st.hc_partial.get() || st.graph_attn != st.attn_ws.get()) {
    st.graphs.clear();
    st.graph_arena = scratch_->arena.get(), st.graph_plan = scratch_->plan.get(), st.graph_partial = st.hc_partial.get();
    st.graph_attn = st.attn_ws.get();
  }
  StepGraphCache::Key key = {plan.n_tokens, plan.n_seqs, plan.n_logit_rows, plan.batch.max_blocks, plan.n_sel,
                             plan.max_sel_rows, plan.max_emit, static_cast<int64_t>(scratch_->plan_host.size()),
                             st.fused_ops ? 1 : 0, plan.moe_rows};
  for (const RatioPlan& r : plan.ratios) key.push_back(r.max_comp_rows);
  if (st.graphs.contains(key)) {
    st.graphs.replay(key, stream_, st.stats);
    return true;
  }
  st.graphs.begin_capture(key, stream_);
  capturing_ = true;
  return false;
}

void CudaBackend::step_end() {
  if (!capturing_) return;
  capturing_ = false;
  step_->graphs.end_capture(stream_, step_->stats);
}

void CudaBackend::head_logits(const Plan& plan, const DeviceTensor& hc_fn, const DeviceTensor& hc_scale,
                              const DeviceTensor& hc_base, const DeviceTensor& norm) {
  const ModelConfig& c = config_;
  Scratch& s = *scratch_;
  const int64_t R = plan.n_logit_rows, n = c.n_embd, hw = int64_t(c.hc_count) * n;
  cuda::gather_rows({s.states, hw, plan.logit_rows, s.head_states, hw, R, hw}, stream_);
  cuda::rms_norm({s.head_states, hw, s.head_flat, hw, nullptr, R, hw, c.rms_eps}, stream_);
  matmul_rows(hc_fn, s.head_flat, hw, s.head_mix, c.hc_count, R);
  cuda::HcCollapseParams hp;
  hp.mix = s.head_mix, hp.scale = hc_scale.f32(), hp.base = hc_base.f32();
  hp.states = s.head_states, hp.out = s.head_h, hp.n_tokens = R, hp.n_embd = n, hp.hc = c.hc_count, hp.eps = c.hc_eps;
  cuda::hc_collapse(hp, stream_);
  cuda::rms_norm({s.head_h, n, s.head_h, n, norm.f32(), R, n, c.rms_eps}, stream_);
  matmul_rows(weights_dev_.output, s.head_h, n, s.logits, c.n_vocab, R);
}

}  // namespace ds4
