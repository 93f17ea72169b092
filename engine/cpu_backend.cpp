// CPU reference forward pass orchestration (MODEL.md 1.3-1.5): embed, then per layer the
// hyper-connection mix around attention and MoE, then the head on the requested rows.
#include "engine/cpu_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "engine/cpu_layer.h"
#include "engine/load_error.h"
#include "engine/hyper_connection.h"
#include "kernels/quant.h"

namespace ds4 {
namespace {

[[noreturn]] void invalid_batch(const char* what) {
  std::fprintf(stderr, "%s:%d: CpuBackend::forward: %s\n", __FILE__, __LINE__, what);
  std::abort();
}

// Flattens the batch into token refs (grouped by sequence) and reserves KV room.
std::vector<TokenRef> flatten(const ModelConfig& c, const ForwardBatch& batch, std::vector<SequenceKv*>& kv) {
  std::vector<TokenRef> tokens;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const SequenceInput& in = batch.sequences[s];
    if (!in.kv || in.tokens.empty()) invalid_batch("sequence without KV state or tokens");
    kv.push_back(in.kv);
    const int64_t start = in.kv->num_tokens();
    if (!in.kv->reserve(start + static_cast<int64_t>(in.tokens.size()))) invalid_batch("KV reserve failed");
    for (size_t i = 0; i < in.tokens.size(); ++i) {
      if (in.tokens[i] < 0 || in.tokens[i] >= c.n_vocab) invalid_batch("token id out of range");
      tokens.push_back({static_cast<int>(s), start + static_cast<int64_t>(i), in.tokens[i]});
    }
  }
  return tokens;
}

// One sub-layer with its hyper-connection mix around it.
template <typename Sublayer>
void run_with_hc(const LayerContext& ctx, const TensorView& fn, const TensorView& scale, const TensorView& base,
                 std::vector<float>& states, Sublayer sublayer) {
  const ModelConfig& c = ctx.config;
  const int64_t T = static_cast<int64_t>(ctx.tokens.size()), n = c.n_embd, width = int64_t(c.hc_count) * n;
  const std::vector<HcMix> mix = hc_compute_mix(c, fn, scale, base, states.data(), T, ctx.pool);
  std::vector<float> x(T * n), y(T * n);
  for (int64_t t = 0; t < T; ++t) hc_pre(c, mix[t], &states[t * width], &x[t * n]);
  sublayer(ctx, x.data(), y.data());
  for (int64_t t = 0; t < T; ++t) hc_post(c, mix[t], &y[t * n], &states[t * width]);
}

// The in-graph round trips work on whole blocks: FP8 on 64-value blocks of the non-RoPE part of
// each KV row, Hadamard + FP4 on a power-of-two indexer vector of at least 32 values.
void check_kv_quantization_shapes(const ModelConfig& c) {
  const bool pow2 = c.indexer_dim >= 32 && (c.indexer_dim & (c.indexer_dim - 1)) == 0;
  if (c.nope_dim() % 64 != 0 || !pow2)
    throw LoadError("KV quantisation needs key_length - rope dims (" + std::to_string(c.nope_dim()) +
                    ") to be a multiple of 64 and the indexer key_length (" + std::to_string(c.indexer_dim) +
                    ") a power of two >= 32; run this model with it off");
}

int64_t view_bytes(const TensorView& t) {
  return t.present() ? static_cast<int64_t>(t.ne1 * t.ne2 * t.row_bytes) : 0;
}

// Bytes of every weight a pass reads in full: all but the routed experts (read per distinct
// expert) and the embedding (one row per token).
int64_t dense_weight_bytes(const Weights& w) {
  static constexpr TensorView LayerWeights::*kDense[] = {
      &LayerWeights::hc_attn_fn, &LayerWeights::hc_attn_scale, &LayerWeights::hc_attn_base,
      &LayerWeights::attn_norm, &LayerWeights::attn_q_a, &LayerWeights::attn_q_a_norm, &LayerWeights::attn_q_b,
      &LayerWeights::attn_kv, &LayerWeights::attn_kv_a_norm, &LayerWeights::attn_sinks,
      &LayerWeights::attn_output_a, &LayerWeights::attn_output_b, &LayerWeights::attn_compressor_ape,
      &LayerWeights::attn_compressor_kv, &LayerWeights::attn_compressor_gate, &LayerWeights::attn_compressor_norm,
      &LayerWeights::indexer_attn_q_b, &LayerWeights::indexer_proj, &LayerWeights::indexer_compressor_ape,
      &LayerWeights::indexer_compressor_kv, &LayerWeights::indexer_compressor_gate,
      &LayerWeights::indexer_compressor_norm, &LayerWeights::hc_ffn_fn, &LayerWeights::hc_ffn_scale,
      &LayerWeights::hc_ffn_base, &LayerWeights::ffn_norm, &LayerWeights::ffn_gate_inp, &LayerWeights::exp_probs_b,
      &LayerWeights::ffn_gate_shexp, &LayerWeights::ffn_up_shexp, &LayerWeights::ffn_down_shexp,
  };
  int64_t total = view_bytes(w.output) + view_bytes(w.output_norm) + view_bytes(w.output_hc_fn) +
                  view_bytes(w.output_hc_base) + view_bytes(w.output_hc_scale);
  for (const LayerWeights& lw : w.layers)
    for (auto member : kDense) total += view_bytes(lw.*member);
  return total;
}

// An active shard must be a non-empty range of the model's experts; with one rank it must be all of them.
void check_expert_shard(const ModelConfig& c, const ExpertParallel& ep) {
  if (!ep.active()) return;
  const ExpertShard& s = ep.shard;
  if (s.first < 0 || s.count < 1 || s.first + s.count > c.n_expert)
    throw LoadError("expert parallelism: experts [" + std::to_string(s.first) + ", " + std::to_string(s.first + s.count) +
                    ") are not a non-empty range of the model's " + std::to_string(c.n_expert) + " experts");
  if (ep.comm->world() == 1 && s.count != c.n_expert)
    throw LoadError("expert parallelism: a world of 1 rank must compute all " + std::to_string(c.n_expert) + " experts");
}

// Data-parallel mode needs every rank's experts: the default layout when none are given, else a
// contiguous cover of [0, n_expert) in rank order whose entry rank() is this rank's shard.
void complete_data_parallel_shards(const ModelConfig& c, ExpertParallel& ep) {
  if (!ep.active() || !ep.data_parallel) return;
  const int world = ep.comm->world(), rank = ep.comm->rank();
  if (ep.shards.empty())
    for (int r = 0; r < world; ++r) ep.shards.push_back(expert_shard(r, world, c.n_expert));
  if (ep.shards.size() != size_t(world))
    throw LoadError("expert parallelism: " + std::to_string(ep.shards.size()) + " expert ranges for " +
                    std::to_string(world) + " ranks");
  int next = 0;
  for (const ExpertShard& s : ep.shards) {
    if (s.first != next || s.count < 1)
      throw LoadError("expert parallelism: the ranks' expert ranges must be non-empty, contiguous and in rank order "
                      "(a range starts at " + std::to_string(s.first) + ", expected " + std::to_string(next) + ")");
    next += s.count;
  }
  if (next != c.n_expert)
    throw LoadError("expert parallelism: the ranks' expert ranges cover " + std::to_string(next) + " of the model's " +
                    std::to_string(c.n_expert) + " experts");
  if (ep.shards[rank].first != ep.shard.first || ep.shards[rank].count != ep.shard.count)
    throw LoadError("expert parallelism: rank " + std::to_string(rank) + "'s own range differs from its entry in the list");
}

}  // namespace

CpuBackend::CpuBackend(const ModelConfig& config, const Weights& weights, ForwardOptions options, int threads,
                       ExpertParallel experts)
    : config_(config),
      weights_(weights),
      options_(options),
      experts_(experts),
      pool_(threads),
      rope_plain_(rope_frequencies(config, false)),
      rope_compressed_(rope_frequencies(config, true)) {
  if (options_.quantize_kv) check_kv_quantization_shapes(config);
  check_expert_shard(config, experts_);
  complete_data_parallel_shards(config, experts_);
  dense_weight_bytes_ = dense_weight_bytes(weights);
}

ForwardOutput CpuBackend::forward(const ForwardBatch& batch) {
  const ModelConfig& c = config_;
  std::vector<SequenceKv*> kv;
  const std::vector<TokenRef> tokens = flatten(c, batch, kv);
  const std::vector<KvUndoLog*> undo = prepare_undo(batch);
  const int64_t T = static_cast<int64_t>(tokens.size()), n = c.n_embd, width = int64_t(c.hc_count) * n;

  std::vector<float> states(T * width);
  for (int64_t t = 0; t < T; ++t) {
    float* s = &states[t * width];
    dequantize_row(weights_.token_embd.type, weights_.token_embd.row(tokens[t].token), s, n);
    for (int h = 1; h < c.hc_count; ++h) std::copy_n(s, n, s + h * n);
  }
  ForwardCounters counters;
  for (int il = 0; il < c.n_layer; ++il) {
    const LayerWeights& lw = weights_.layers[il];
    const int ratio = c.compress_ratio(il);
    const LayerContext ctx{c, lw, options_, pool_, ratio == 0 ? rope_plain_ : rope_compressed_, il, ratio,
                           c.is_hash_layer(il), c.swiglu_clamp[il], tokens, kv, undo, &counters, &experts_};
    run_with_hc(ctx, lw.hc_attn_fn, lw.hc_attn_scale, lw.hc_attn_base, states, attention_sublayer);
    run_with_hc(ctx, lw.hc_ffn_fn, lw.hc_ffn_scale, lw.hc_ffn_base, states, moe_sublayer);
  }

  // Rows that want logits.
  ForwardOutput out;
  out.n_vocab = c.n_vocab;
  out.unique_experts = counters.unique_experts;
  out.weight_bytes_read = dense_weight_bytes_ + counters.expert_bytes + T * static_cast<int64_t>(weights_.token_embd.row_bytes);
  std::vector<int64_t> rows;
  int64_t t0 = 0;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    const SequenceInput& in = batch.sequences[s];
    const int64_t len = static_cast<int64_t>(in.tokens.size());
    out.first_row.push_back(static_cast<int64_t>(rows.size()));
    for (int64_t i = in.all_logits ? 0 : len - 1; i < len; ++i) rows.push_back(t0 + i);
    out.n_rows.push_back(static_cast<int64_t>(rows.size()) - out.first_row.back());
    in.kv->set_num_tokens(in.kv->num_tokens() + len);
    t0 += len;
  }
  const int64_t R = static_cast<int64_t>(rows.size());
  out.final_states.resize(R * width);
  for (int64_t r = 0; r < R; ++r) std::copy_n(&states[rows[r] * width], width, &out.final_states[r * width]);
  const Weights& w = weights_;
  head_logits(w.output_hc_fn, w.output_hc_scale, w.output_hc_base, w.output_norm, out);
  return out;
}

void CpuBackend::head_logits(const TensorView& fn, const TensorView& scale, const TensorView& base,
                             const TensorView& norm, ForwardOutput& out) {
  const ModelConfig& c = config_;
  const int64_t n = c.n_embd;
  const int64_t R = static_cast<int64_t>(out.final_states.size()) / (int64_t(c.hc_count) * n);
  std::vector<float> h(R * n);
  hc_collapse(c, fn, scale, base, out.final_states.data(), R, h.data(), pool_);
  for (int64_t r = 0; r < R; ++r) rms_norm(&h[r * n], norm.f32(), n, c.rms_eps, &h[r * n]);
  out.n_vocab = c.n_vocab;
  out.logits.resize(R * c.n_vocab);
  matmul(weights_.output.mat(), h.data(), R, out.logits.data(), pool_);
}

ModelConfig mtp_kv_config(const ModelConfig& config) {
  ModelConfig m = config;
  m.n_layer = 1;
  m.n_hash_layers = 0;
  m.compress_ratios = {0};
  m.swiglu_clamp = {config.swiglu_clamp.back()};
  return m;
}

// Logs of the speculative sequences of this batch (every older log is dropped: a rollback is only
// valid right after its forward).
std::vector<KvUndoLog*> CpuBackend::prepare_undo(const ForwardBatch& batch) {
  for (auto it = undo_.begin(); it != undo_.end();) {
    const bool keep = std::any_of(batch.sequences.begin(), batch.sequences.end(),
                                  [&](const SequenceInput& in) { return in.speculative && in.kv == it->first; });
    it = keep ? std::next(it) : undo_.erase(it);
  }
  std::vector<KvUndoLog*> logs;
  bool any = false;
  for (const SequenceInput& in : batch.sequences) {
    KvUndoLog* log = nullptr;
    if (in.speculative) {
      // flatten() reserved already; the start is the position before this forward.
      const int64_t start = in.kv->num_tokens();
      log = &undo_[in.kv];
      log->reset(start, start + static_cast<int64_t>(in.tokens.size()));
      any = true;
    }
    logs.push_back(log);
  }
  if (!any) logs.clear();
  return logs;
}

void CpuBackend::rollback(SequenceKv& kv, int64_t num_tokens) {
  const auto it = undo_.find(&kv);
  if (it == undo_.end()) invalid_batch("rollback of a sequence that was not speculative in the last forward");
  KvUndoLog& log = it->second;
  if (num_tokens < log.first_pos() || num_tokens > log.end_pos() || kv.num_tokens() != log.end_pos())
    invalid_batch("rollback outside the positions of the last forward");
  log.rollback(num_tokens);
  kv.set_num_tokens(num_tokens);
}

ForwardOutput CpuBackend::forward_mtp(const MtpWeights& mtp, std::span<const DraftRun> runs) {
  const ModelConfig& c = config_;
  const int64_t n = c.n_embd, width = int64_t(c.hc_count) * n;
  std::vector<TokenRef> tokens;
  std::vector<SequenceKv*> kv;
  std::vector<int64_t> last;  // per run: index of its last input
  for (size_t r = 0; r < runs.size(); ++r) {
    const DraftRun& run = runs[r];
    const int64_t len = static_cast<int64_t>(run.tokens.size()), start = run.kv ? run.kv->num_tokens() : 0;
    if (!run.kv || len < 1 || static_cast<int64_t>(run.prev_states.size()) != len * width)
      invalid_batch("bad MTP run (no state, no tokens, or prev_states not [tokens, hc_count * n_embd])");
    if (!run.kv->reserve(start + len)) invalid_batch("MTP KV reserve failed");
    kv.push_back(run.kv);
    for (int64_t j = 0; j < len; ++j) {
      if (run.tokens[j] < 0 || run.tokens[j] >= c.n_vocab) invalid_batch("MTP token id out of range");
      tokens.push_back({static_cast<int>(r), start + j, run.tokens[j]});
    }
    last.push_back(static_cast<int64_t>(tokens.size()) - 1);
  }
  const int64_t T = static_cast<int64_t>(tokens.size());
  std::vector<float> e(T * n), hs(T * width), states(T * width);
  std::vector<const float*> prev(T);
  for (size_t r = 0, t = 0; r < runs.size(); ++r)
    for (size_t j = 0; j < runs[r].tokens.size(); ++j, ++t) prev[t] = runs[r].prev_states.data() + j * width;
  for (int64_t t = 0; t < T; ++t) {
    dequantize_row(weights_.token_embd.type, weights_.token_embd.row(tokens[t].token), &e[t * n], n);
    rms_norm(&e[t * n], mtp.enorm.f32(), n, c.rms_eps, &e[t * n]);
    for (int s = 0; s < c.hc_count; ++s)  // per-stream RMSNorm of the previous state
      rms_norm(prev[t] + s * n, mtp.hnorm.f32(), n, c.rms_eps, &hs[t * width + s * n]);
  }
  // H0[s] = e_proj·e + h_proj·h_s (the embedding part broadcast to every stream)
  std::vector<float> ep(T * n), hp(T * width);
  matmul(mtp.e_proj.mat(), e.data(), T, ep.data(), pool_);
  matmul(mtp.h_proj.mat(), hs.data(), T * c.hc_count, hp.data(), pool_);
  for (int64_t t = 0; t < T; ++t)
    for (int s = 0; s < c.hc_count; ++s)
      for (int64_t d = 0; d < n; ++d) states[t * width + s * n + d] = ep[t * n + d] + hp[t * width + s * n + d];

  const std::vector<KvUndoLog*> no_undo;
  const LayerContext ctx{c, mtp.block, options_, pool_, rope_plain_, 0, 0, false, c.swiglu_clamp.back(), tokens, kv, no_undo};
  run_with_hc(ctx, mtp.block.hc_attn_fn, mtp.block.hc_attn_scale, mtp.block.hc_attn_base, states, attention_sublayer);
  run_with_hc(ctx, mtp.block.hc_ffn_fn, mtp.block.hc_ffn_scale, mtp.block.hc_ffn_base, states, moe_sublayer);
  for (size_t r = 0; r < runs.size(); ++r) kv[r]->set_num_tokens(kv[r]->num_tokens() + static_cast<int64_t>(runs[r].tokens.size()));

  ForwardOutput out;
  out.final_states.resize(runs.size() * width);
  for (size_t r = 0; r < runs.size(); ++r) {
    out.first_row.push_back(static_cast<int64_t>(r));
    out.n_rows.push_back(1);
    std::copy_n(&states[last[r] * width], width, &out.final_states[r * width]);
  }
  head_logits(mtp.hc_head_fn, mtp.hc_head_scale, mtp.hc_head_base, mtp.norm, out);
  return out;
}

}  // namespace ds4
