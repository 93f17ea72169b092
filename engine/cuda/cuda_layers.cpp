// CudaBackend sub-layers: the hyper-connection mix around each sub-layer, the attention
// sub-layer (projections, raw rows, compressors, indexer, attention, grouped output projection)
// and the MoE sub-layer (router, experts grouped by id, shared expert). Same op order as
// engine/cpu_attention.cpp / cpu_moe.cpp / cpu_backend.cpp. With StepState::fused_ops the chains
// of small ops run as the fused kernels of kernels/cuda/fused_ops.h: a sub-layer's hc post-mix
// is deferred into the next boundary (hc_fused), which also yields the next sub-layer's normed
// input; otherwise every op is its own kernel (the reference path, kept for comparison).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>

#include "engine/cuda/cuda_backend_internal.h"
#include "engine/cuda/cuda_step.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/expert_shard.h"
#include "kernels/cuda/fused_ops.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/ops.h"

namespace ds4 {

bool expert_x_planes(int64_t n_tokens) {
  static const bool enabled = [] {
    const char* e = std::getenv("DS4_X_PLANES");
    return !(e && std::string(e) == "0");
  }();
  return enabled && n_tokens >= 4 && n_tokens <= 256;
}

namespace {

// Rotates the tail of rows [n_tokens · rows_per_token, width] at the tokens' positions.
cuda::RopeParams rope_params(float* x, int64_t width, int64_t n_tokens, int64_t rows_per_token, const int32_t* pos,
                             const double* freq, int n_pairs, bool inverse) {
  cuda::RopeParams p;
  p.x = x, p.row_stride = width, p.width = width, p.n_rows = n_tokens * rows_per_token;
  p.rows_per_token = rows_per_token, p.pos = pos, p.freq = freq, p.n_pairs = n_pairs, p.inverse = inverse;
  return p;
}

}  // namespace

// Before a sub-layer: coefficients from the normalised state (mix, Sinkhorn), x = pre-mix.
void CudaBackend::hc_begin(const DeviceTensor& fn, const DeviceTensor& scale, const DeviceTensor& base, int64_t T) {
  const ModelConfig& c = config_;
  Scratch& s = *scratch_;
  const int64_t n = c.n_embd, hw = int64_t(c.hc_count) * n, mixd = c.hc_mix_dim();
  cuda::rms_norm({s.states, hw, s.flat, hw, nullptr, T, hw, c.rms_eps}, stream_);
  matmul_rows(fn, s.flat, hw, s.mix, mixd, T);
  cuda::HcCoefParams cp;
  cp.mix = s.mix, cp.scale = scale.f32(), cp.base = base.f32(), cp.coef = s.coef, cp.n_tokens = T;
  cp.hc = c.hc_count, cp.sinkhorn_iters = c.hc_sinkhorn_iters, cp.eps = c.hc_eps;
  cuda::hc_coefficients(cp, stream_);
  cuda::hc_pre({s.coef, s.states, s.x, T, n, c.hc_count}, stream_);
}

// After a sub-layer: state = post-mix(y) (into the spare buffer, then swapped).
void CudaBackend::hc_end(int64_t T) {
  Scratch& s = *scratch_;
  cuda::hc_post({s.coef, s.states, s.y, s.states_next, T, config_.n_embd, config_.hc_count}, stream_);
  std::swap(s.states, s.states_next);
}

// Fused boundary: the pending post-mix of the previous sub-layer (if any) and, when fn is given,
// the next sub-layer's coefficients and normed input (RMSNorm with `norm`) in two kernels.
void CudaBackend::hc_fused(const DeviceTensor* fn, const DeviceTensor* scale, const DeviceTensor* base,
                           const DeviceTensor* norm, int64_t T) {
  const ModelConfig& c = config_;
  Scratch& s = *scratch_;
  StepState& st = *step_;
  cuda::HcBoundaryParams bp;
  bp.states = s.states, bp.n_tokens = T, bp.n_embd = c.n_embd, bp.hc = c.hc_count, bp.mix_dim = c.hc_mix_dim();
  if (st.pending != StepState::PendingPost::kNone) {
    bp.prev_coef = s.coef, bp.states_out = s.states_next;
    if (st.pending == StepState::PendingPost::kAttention) {
      bp.y = s.y;
    } else {
      bp.expert_out = s.expert_out, bp.shared = s.sh_out, bp.k = c.n_expert_used;
    }
  }
  if (fn) bp.fn = fn->data, bp.fn_type = fn->type, bp.fn_row_bytes = fn->row_bytes, bp.partial = st.hc_partial.as<double>();
  cuda::hc_boundary(bp, stream_);
  if (st.pending != StepState::PendingPost::kNone) std::swap(s.states, s.states_next);
  st.pending = StepState::PendingPost::kNone;
  if (!fn) return;
  cuda::HcFinishParams fp;
  fp.partial = st.hc_partial.as<double>(), fp.states = s.states, fp.scale = scale->f32(), fp.base = base->f32();
  fp.coef = s.coef, fp.norm_weight = norm->f32(), fp.normed = s.normed, fp.n_tokens = T, fp.n_embd = c.n_embd;
  fp.hc = c.hc_count, fp.mix_dim = c.hc_mix_dim(), fp.sinkhorn_iters = c.hc_sinkhorn_iters;
  fp.hc_eps = c.hc_eps, fp.rms_eps = c.rms_eps;
  cuda::hc_finish(fp, stream_);
}

// After the last layer: the final MoE post-mix (fused path only).
void CudaBackend::hc_flush(int64_t T) {
  if (step_->fused_ops && step_->pending != StepState::PendingPost::kNone) hc_fused(nullptr, nullptr, nullptr, nullptr, T);
}

CudaBackend::LayerRef CudaBackend::main_layer(int il) const {
  const ModelConfig& c = config_;
  return LayerRef{&weights_dev_.layers[il], kv_->layer(il), il, c.compress_ratio(il), c.is_hash_layer(il), c.swiglu_clamp[il]};
}

void CudaBackend::attention_layer(const Plan& plan, const LayerRef& L) {
  const DeviceLayerWeights& w = *L.w;
  if (step_->fused_ops) {
    hc_fused(&w.hc_attn_fn, &w.hc_attn_scale, &w.hc_attn_base, &w.attn_norm, plan.n_tokens);
    attention_sublayer(plan, L);
    step_->pending = StepState::PendingPost::kAttention;
    return;
  }
  hc_begin(w.hc_attn_fn, w.hc_attn_scale, w.hc_attn_base, plan.n_tokens);
  attention_sublayer(plan, L);
  hc_end(plan.n_tokens);
}

void CudaBackend::moe_layer(const Plan& plan, const LayerRef& L) {
  const DeviceLayerWeights& w = *L.w;
  if (step_->fused_ops) {
    hc_fused(&w.hc_ffn_fn, &w.hc_ffn_scale, &w.hc_ffn_base, &w.ffn_norm, plan.n_tokens);
    moe_sublayer(plan, L);
    step_->pending = StepState::PendingPost::kMoe;
    return;
  }
  hc_begin(w.hc_ffn_fn, w.hc_ffn_scale, w.hc_ffn_base, plan.n_tokens);
  moe_sublayer(plan, L);
  hc_end(plan.n_tokens);
}

void CudaBackend::attention_sublayer(const Plan& plan, const LayerRef& L) {
  const ModelConfig& c = config_;
  const DeviceLayerWeights& w = *L.w;
  Scratch& s = *scratch_;
  const int64_t T = plan.n_tokens, n = c.n_embd, hd = c.head_dim, qd = c.q_dim();
  const int ratio = L.ratio;
  const int n_pairs = c.rope_dim / 2;
  const double* freq = rope_freq_.as<double>() + (ratio == 0 ? 0 : n_pairs);
  const int32_t* pos = plan.batch.token_pos;

  const bool fused = step_->fused_ops;
  if (!fused) cuda::rms_norm({s.x, n, s.normed, n, w.attn_norm.f32(), T, n, c.rms_eps}, stream_);
  matmul_rows_pair(w.attn_q_a, s.q_lora, c.q_lora_rank, w.attn_kv, s.kv, hd, s.normed, n, T);
  cuda::rms_norm({s.q_lora, c.q_lora_rank, s.q_lora, c.q_lora_rank, w.attn_q_a_norm.f32(), T, c.q_lora_rank, c.rms_eps}, stream_);
  matmul_rows(w.attn_q_b, s.q_lora, c.q_lora_rank, s.q, qd, T);
  if (fused) {
    cuda::HeadNormRopeParams qp;
    qp.x = s.q, qp.n_tokens = T, qp.heads = c.n_head, qp.head_dim = static_cast<int>(hd), qp.eps = c.rms_eps;
    qp.pos = pos, qp.freq = freq, qp.n_pairs = n_pairs;
    cuda::q_heads_norm_rope(qp, stream_);
    cuda::KvRowParams kp;
    kp.kv = s.kv, kp.weight = w.attn_kv_a_norm.f32(), kp.rawq = s.rawq, kp.n_tokens = T, kp.head_dim = c.head_dim;
    kp.nope_dim = c.nope_dim(), kp.eps = c.rms_eps, kp.pos = pos, kp.freq = freq, kp.n_pairs = n_pairs;
    kp.quantize = options_.forward.quantize_kv;
    cuda::kv_norm_rope_quant(kp, stream_);
  } else {
    cuda::rms_norm({s.q, hd, s.q, hd, nullptr, T * c.n_head, hd, c.rms_eps}, stream_);  // per head, no weight
    cuda::rms_norm({s.kv, hd, s.kv, hd, w.attn_kv_a_norm.f32(), T, hd, c.rms_eps}, stream_);
    cuda::rope_tail(rope_params(s.q, hd, T, c.n_head, pos, freq, n_pairs, false), stream_);
    cuda::rope_tail(rope_params(s.kv, hd, T, 1, pos, freq, n_pairs, false), stream_);
    cuda::quantize_raw_rows({s.kv, s.rawq, T, c.head_dim, c.nope_dim(), options_.forward.quantize_kv}, stream_);
  }

  const bool sparse = ratio == 4;
  if (ratio > 0) compressed_rows(plan, L.il, false);
  if (sparse) {
    compressed_rows(plan, L.il, true);
    indexer_select(plan, L.il);
  }
  const cuda::LayerKv& kv = L.kv;
  cuda::AttentionParams ap;
  ap.q = s.q, ap.rawq = s.rawq, ap.sinks = w.attn_sinks.f32(), ap.heads = c.n_head;
  if (sparse && plan.n_sel > 0) {
    ap.sel_of_token = plan.sel_of_token, ap.selected = s.idx_selected, ap.top_k = c.indexer_top_k;
  }
  ap.out = s.heads;
  ap.max_rows = c.sliding_window + (ratio > 0 ? plan.for_ratio(ratio).max_comp_rows : 0);
  if (fused) {  // rows read once per 4 heads, split over blocks; inverse RoPE and ring store fused
    cuda::AttentionSplitExtras ax;
    ax.ws_acc = step_->attn_ws.as<float>();
    ax.ws_ml = reinterpret_cast<double*>(step_->attn_ws.as<uint8_t>() + step_->attn_ws_ml_offset);
    ax.inv_freq = freq, ax.n_pairs = n_pairs, ax.store_raw = true;
    cuda::attention_split(plan.batch, kv, ap, ax, stream_);
  } else {
    cuda::attention(plan.batch, kv, ap, stream_);
    cuda::store_raw_window(plan.batch, kv, s.rawq, stream_);
    cuda::rope_tail(rope_params(s.heads, hd, T, c.n_head, pos, freq, n_pairs, true), stream_);
  }

  // Grouped output projection: row block g of attn_output_a reads head group g.
  cuda::MatmulParams op;
  const DeviceTensor& oa = w.attn_output_a;
  op.w = oa.data, op.type = oa.type, op.n_in = static_cast<int64_t>(oa.ne0), op.n_out = static_cast<int64_t>(oa.n_rows());
  op.row_bytes = oa.row_bytes, op.x = s.heads, op.x_stride = qd, op.y = s.low, op.y_stride = op.n_out, op.n_tokens = T;
  op.x_group_rows = c.o_lora_rank;
  cuda::matmul(op, stream_);
  matmul_rows(w.attn_output_b, s.low, op.n_out, s.y, n, T);
}

void CudaBackend::compressed_rows(const Plan& plan, int il, bool indexer) {
  const ModelConfig& c = config_;
  const DeviceLayerWeights& w = weights_dev_.layers[il];
  Scratch& s = *scratch_;
  const int ratio = c.compress_ratio(il);
  const RatioPlan& rp = plan.for_ratio(ratio);
  const int dim = indexer ? c.indexer_dim : c.head_dim;
  const int64_t width = frontier_width(ratio, dim);
  const DeviceTensor& kv_w = indexer ? w.indexer_compressor_kv : w.attn_compressor_kv;
  const DeviceTensor& gate_w = indexer ? w.indexer_compressor_gate : w.attn_compressor_gate;
  const DeviceTensor& ape = indexer ? w.indexer_compressor_ape : w.attn_compressor_ape;
  const DeviceTensor& norm = indexer ? w.indexer_compressor_norm : w.attn_compressor_norm;
  float* kv_buf = indexer ? s.idx_kv : s.comp_kv;
  float* gate_buf = indexer ? s.idx_gate : s.comp_gate;
  float* pooled = indexer ? s.idx_pooled : s.pooled;
  matmul_rows_pair(kv_w, kv_buf, width, gate_w, gate_buf, width, s.normed, c.n_embd, plan.n_tokens);

  cuda::CompressorParams cp;
  cp.ratio = ratio, cp.row_dim = dim, cp.kv_proj = kv_buf, cp.gate_proj = gate_buf;
  cp.ape = ape.data, cp.ape_type = ape.type, cp.ape_row_bytes = ape.row_bytes;
  cp.frontier_kv = kv_->frontier(il, indexer, false), cp.frontier_score = kv_->frontier(il, indexer, true);
  cp.frontier_slot_stride = kv_->frontier_slot_stride();
  cp.emit_index = rp.emit_index, cp.pooled = pooled;
  if (undo_.active && !refeeding_) {  // speculative inputs log what they overwrite (cuda_rollback.cpp)
    cp.undo = undo_.log.as<float>() + undo_.offset[il * 2 + indexer], cp.undo_seq = undo_.seq_map.as<int32_t>();
    cp.undo_tokens = undo_.tokens;
  }
  cuda::compressor_update(plan.batch, cp, stream_);

  const cuda::LayerKv kv = kv_->layer(il);
  cuda::CompressedFinishParams fp;
  fp.pooled = pooled, fp.n_emit = rp.n_emit, fp.row_dim = dim, fp.nope_dim = c.nope_dim();
  if (step_->pad_plan) fp.emit_index = rp.emit_index, fp.n_index = plan.n_tokens;  // one block per token: replayable
  fp.norm = norm.f32(), fp.eps = c.rms_eps;
  fp.emit_seq = rp.emit_seq, fp.emit_row = rp.emit_row, fp.emit_pos = rp.emit_pos;
  fp.freq = rope_freq_.as<double>() + c.rope_dim / 2, fp.n_pairs = c.rope_dim / 2;
  fp.indexer = indexer, fp.quantize = options_.forward.quantize_kv;
  fp.store = indexer ? kv.index : kv.comp, fp.rows_per_block = kv.rows_per_block;
  fp.block_stride = indexer ? kv.index_block_stride : kv.comp_block_stride;
  cuda::compressed_finish(plan.batch, fp, stream_);
}

void CudaBackend::indexer_select(const Plan& plan, int il) {
  if (plan.n_sel == 0) return;
  const ModelConfig& c = config_;
  const DeviceLayerWeights& w = weights_dev_.layers[il];
  Scratch& s = *scratch_;
  const int64_t T = plan.n_tokens, heads = c.indexer_heads, dim = c.indexer_dim;
  const int n_pairs = c.rope_dim / 2;
  matmul_rows(w.indexer_attn_q_b, s.q_lora, c.q_lora_rank, s.idx_q, heads * dim, T);
  if (step_->fused_ops) {
    cuda::IndexerQParams iq;
    iq.q = s.idx_q, iq.n_tokens = T, iq.heads = static_cast<int>(heads), iq.dim = static_cast<int>(dim);
    iq.pos = plan.batch.token_pos, iq.freq = rope_freq_.as<double>() + n_pairs, iq.n_pairs = n_pairs;
    iq.quantize = options_.forward.quantize_kv;
    cuda::indexer_q_rope_qat(iq, stream_);
  } else {
    cuda::rope_tail(rope_params(s.idx_q, dim, T, heads, plan.batch.token_pos, rope_freq_.as<double>() + n_pairs, n_pairs, false),
                    stream_);
    if (options_.forward.quantize_kv) cuda::hadamard_fp4_rows(s.idx_q, T * heads, static_cast<int>(dim), stream_);
  }
  matmul_rows(w.indexer_proj, s.normed, c.n_embd, s.idx_w, heads, T);

  const cuda::LayerKv kv = kv_->layer(il);
  cuda::IndexerScoreParams sp;
  sp.tokens = plan.sel_tokens, sp.n_sel = plan.n_sel, sp.q = s.idx_q, sp.w = s.idx_w;
  sp.heads = static_cast<int>(heads), sp.dim = static_cast<int>(dim), sp.ratio = 4;
  sp.scale = 1.0f / std::sqrt(static_cast<float>(dim) * static_cast<float>(heads));
  sp.index = kv.index, sp.rows_per_block = kv.rows_per_block, sp.block_stride = kv.index_block_stride;
  sp.scores = s.idx_scores, sp.max_rows = plan.max_sel_rows;
  cuda::indexer_scores(plan.batch, sp, stream_);
  cuda::TopKParams tp;
  tp.tokens = plan.sel_tokens, tp.n_sel = plan.n_sel, tp.scores = s.idx_scores, tp.max_rows = plan.max_sel_rows;
  tp.ratio = 4, tp.k = c.indexer_top_k, tp.selected = s.idx_selected;
  cuda::indexer_top_k(plan.batch, tp, stream_);
}

// The routed experts run over M rows: the step's own tokens, or under data-parallel attention
// every rank's (gathered); the shared expert and the combine over the own T tokens (none on an
// idle data-parallel rank).
void CudaBackend::moe_sublayer(const Plan& plan, const LayerRef& L) {
  const ModelConfig& c = config_;
  const DeviceLayerWeights& w = *L.w;
  Scratch& s = *scratch_;
  const int64_t T = plan.n_tokens, n = c.n_embd, k = c.n_expert_used;
  // Experts the router chooses from (the expert tensors hold only a rank's slice under expert parallelism).
  const int64_t n_expert = static_cast<int64_t>(w.ffn_gate_inp.ne1), ffn = static_cast<int64_t>(w.ffn_gate_exps.ne1);
  const bool fused = step_->fused_ops;
  if (!fused && T > 0) cuda::rms_norm({s.x, n, s.normed, n, w.ffn_norm.f32(), T, n, c.rms_eps}, stream_);
  const ExpertParallel& ep = options_.expert_parallel;
  const bool sharded = ep.active() && L.il >= 0;
  const bool dp = sharded && ep.data_parallel;
  const int64_t M = dp ? plan.moe_rows : T;
  const float* x_routed = dp ? gather_moe_rows(plan) : s.normed;
  matmul_rows(w.ffn_gate_inp, x_routed, n, s.router_logits, n_expert, M);
  const bool hash = L.hash;
  cuda::RouterParams rp;
  rp.logits = s.router_logits, rp.bias = !hash && w.exp_probs_b.present() ? w.exp_probs_b.f32() : nullptr;
  rp.hash_table = hash ? w.ffn_gate_tid2eid.i32() : nullptr, rp.tokens = dp ? s.dp_tokens : plan.tokens;
  rp.experts = s.experts, rp.weights = s.route_weights, rp.n_tokens = M, rp.n_expert = static_cast<int>(n_expert);
  rp.k = static_cast<int>(k), rp.normalize = c.expert_weights_norm, rp.scale = c.expert_weights_scale;
  const cuda::MoeGroupParams gp{s.experts,     M,           static_cast<int>(k), static_cast<int>(n_expert), s.group_offsets,
                                s.token_rows,  s.slot_rows, s.active_experts,    s.n_active};
  if (fused) {
    cuda::route_and_group(rp, gp, step_->route_counter.as<int32_t>(), stream_);
  } else {
    cuda::route(rp, stream_);
    cuda::moe_group(gp, stream_);
  }
  // Expert parallelism: read only this rank's experts; the other routes' output rows stay zero,
  // and after the down product the routed sums of all ranks are added up (docs/PARALLEL.md):
  // all-reduced (replicated attention) or reduce-scattered to the rank each token came from
  // (data-parallel attention).
  // Weights uploaded as the rank's slice (expert_slice): the list holds local ids and the products
  // read the grouping's offsets from the slice's first expert on.
  const int expert_base = sharded && int64_t(w.ffn_gate_exps.ne2) < n_expert ? ep.shard.first : 0;
  if (sharded) {
    cuda::keep_shard_experts(s.active_experts, s.n_active, ep.shard.first, ep.shard.count, expert_base, stream_);
    cuda::fill(s.expert_out, M * k * n, 0.0f, stream_);
  }
  const auto routed_sums = [&] {
    if (!sharded) return;
    cuda::sum_route_slots(s.expert_out, M, static_cast<int>(k), n, s.ep_sum, stream_);
    if (dp) ep.comm->reduce_scatter_sum(s.ep_sum, s.dp_own, static_cast<size_t>(plan.rank_rows * n), stream_);
    else ep.comm->all_reduce_sum(s.ep_sum, static_cast<size_t>(T * n), stream_);
    if (T > 0) cuda::spread_route_sum(dp ? s.dp_own : s.ep_sum, T, static_cast<int>(k), n, s.expert_out, stream_);
  };

  // Routed experts: every expert's matrices read once for all of its tokens; on expert_x_planes
  // steps their activations (rows [0, x_count) of x) split once into s.x_planes first.
  const bool planes = expert_x_planes(M);
  auto grouped_params = [&](const DeviceTensor& t, const float* x, int64_t x_stride, int64_t x_count, const int32_t* x_rows,
                            float* y, int64_t y_stride) {
    cuda::MatmulParams p;
    p.w = t.data, p.type = t.type, p.n_in = static_cast<int64_t>(t.ne0), p.n_out = static_cast<int64_t>(t.ne1);
    p.row_bytes = t.row_bytes, p.x = x, p.x_stride = x_stride, p.y = y, p.y_stride = y_stride;
    p.n_groups = static_cast<int64_t>(t.ne2), p.group_stride_bytes = t.matrix_bytes();
    p.group_offsets = s.group_offsets + expert_base, p.x_rows = x_rows, p.y_rows = s.slot_rows;
    p.group_list = s.active_experts, p.group_count = s.n_active, p.grid_groups = std::min(p.n_groups, M * k);
    p.n_tokens = M * k;  // the list's entries: picks the tiling (cuda::matmul)
    if (planes && cuda::reads_x_planes(p)) {
      cuda::split_x_planes(x, x_stride, x_count, p.n_in, s.x_planes, stream_);
      p.x_planes = s.x_planes;
    }
    return p;
  };
  const float limit = L.swiglu_clamp;
  const int64_t ffn_sh = static_cast<int64_t>(w.ffn_gate_shexp.ne1);
  const cuda::SwigluParams routed{s.ffn_gate, s.ffn_up, s.ffn_mid, M * k, ffn, limit, s.route_weights};
  const cuda::SwigluParams shared{s.sh_gate, s.sh_up, s.sh_mid, T, ffn_sh, limit, nullptr};
  // gate and up of the routed experts (and of the shared expert) as one launch each
  const cuda::MatmulParams gate = grouped_params(w.ffn_gate_exps, x_routed, n, M, s.token_rows, s.ffn_gate, ffn);
  cuda::MatmulParams up = gate;  // same activations (and planes), the up matrices
  up.w = w.ffn_up_exps.data, up.y = s.ffn_up;
  cuda::matmul_pair(gate, up, stream_);
  if (T == 0) {  // an idle data-parallel rank: only the other ranks' routes to its experts
    cuda::swiglu(routed, stream_);
    cuda::matmul(grouped_params(w.ffn_down_exps, s.ffn_mid, ffn, M * k, s.slot_rows, s.expert_out, n), stream_);
    routed_sums();
    return;
  }
  if (fused) {  // both activations in one launch; the combine happens in the next hc boundary
    matmul_rows_pair(w.ffn_gate_shexp, s.sh_gate, ffn_sh, w.ffn_up_shexp, s.sh_up, ffn_sh, s.normed, n, T);
    cuda::swiglu_pair(routed, shared, stream_);
    cuda::matmul(grouped_params(w.ffn_down_exps, s.ffn_mid, ffn, M * k, s.slot_rows, s.expert_out, n), stream_);
    routed_sums();
    matmul_rows(w.ffn_down_shexp, s.sh_mid, ffn_sh, s.sh_out, n, T);
    return;
  }
  cuda::swiglu(routed, stream_);
  cuda::matmul(grouped_params(w.ffn_down_exps, s.ffn_mid, ffn, M * k, s.slot_rows, s.expert_out, n), stream_);
  routed_sums();
  matmul_rows_pair(w.ffn_gate_shexp, s.sh_gate, ffn_sh, w.ffn_up_shexp, s.sh_up, ffn_sh, s.normed, n, T);
  cuda::swiglu(shared, stream_);
  matmul_rows(w.ffn_down_shexp, s.sh_mid, ffn_sh, s.sh_out, n, T);
  cuda::moe_combine({s.expert_out, s.sh_out, s.y, T, n, static_cast<int>(k)}, stream_);
}

}  // namespace ds4
