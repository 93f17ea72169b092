// Attention sub-layer of the CPU reference (MODEL.md 1.4, 2.2-2.4): low-rank query with per-head
// RMSNorm, the shared K=V row, partial RoPE, raw sliding window + compressed rows (all of them on
// HCA layers, the indexer's top-k on CSA layers) in one softmax with per-head sinks, inverse RoPE
// on the outputs, grouped low-rank output projection. Projections are batched over all tokens;
// the KV update and attention run token by token in position order within each sequence. For
// speculative inputs every overwritten raw / frontier row is first saved in the sequence's undo log.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu_layer.h"
#include "kernels/cpu_ops.h"
#include "kernels/qat.h"
#include "kernels/f16.h"
#include "kernels/quant.h"

namespace ds4 {
namespace {

using Buffer = std::vector<float>;

Buffer alloc(int64_t rows, int64_t cols) { return Buffer(static_cast<size_t>(rows * cols)); }

// A small tensor (e.g. the compressor's ape) as f32 values.
Buffer dequantized(const TensorView& t) {
  const MatView m = t.mat();
  Buffer out = alloc(m.n_out, m.n_in);
  for (int64_t r = 0; r < m.n_out; ++r) dequantize_row(m.type, m.row(r), &out[r * m.n_in], m.n_in);
  return out;
}

Buffer project(const TensorView& w, const Buffer& x, int64_t n_tokens, ThreadPool& pool) {
  Buffer y = alloc(n_tokens, static_cast<int64_t>(w.ne1 * w.ne2));
  matmul(w.mat(), x.data(), n_tokens, y.data(), pool);
  return y;
}

void norm_rows(Buffer& x, int64_t width, const TensorView& weight, float eps) {
  for (size_t off = 0; off < x.size(); off += width) rms_norm(&x[off], weight.present() ? weight.f32() : nullptr, width, eps, &x[off]);
}

// Per-token projections shared by the whole batch.
struct Projections {
  Buffer normed;      // [T, n_embd]  RMSNorm(x; attn_norm): input of q, kv and the compressors
  Buffer q_lora;      // [T, q_lora]  normalised low-rank query (also feeds the indexer)
  Buffer q;           // [T, n_head * head_dim], head-normalised, RoPE'd
  Buffer kv;          // [T, head_dim], normalised, RoPE'd
  Buffer comp_kv, comp_gate;  // [T, W] attention compressor (ratio != 0)
  Buffer idx_kv, idx_gate;    // [T, Wi] indexer compressor (CSA)
  Buffer idx_q;       // [T, idx_heads * idx_dim], RoPE'd (+ QAT)
  Buffer idx_w;       // [T, idx_heads]
  Buffer comp_ape, idx_ape;   // [R, W] / [R, Wi] compressor position biases as f32
};

Projections project_all(const LayerContext& ctx, const float* x) {
  const ModelConfig& c = ctx.config;
  const LayerWeights& w = ctx.w;
  const int64_t T = static_cast<int64_t>(ctx.tokens.size());
  Projections p;
  p.normed.assign(x, x + T * c.n_embd);
  norm_rows(p.normed, c.n_embd, w.attn_norm, c.rms_eps);
  p.q_lora = project(w.attn_q_a, p.normed, T, ctx.pool);
  norm_rows(p.q_lora, c.q_lora_rank, w.attn_q_a_norm, c.rms_eps);
  p.q = project(w.attn_q_b, p.q_lora, T, ctx.pool);
  norm_rows(p.q, c.head_dim, TensorView{}, c.rms_eps);  // per-head RMSNorm without weight
  p.kv = project(w.attn_kv, p.normed, T, ctx.pool);
  norm_rows(p.kv, c.head_dim, w.attn_kv_a_norm, c.rms_eps);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t pos = ctx.tokens[t].pos;
    for (int h = 0; h < c.n_head; ++h) apply_rope_tail(&p.q[(t * c.n_head + h) * c.head_dim], c.head_dim, ctx.rope, pos, false);
    apply_rope_tail(&p.kv[t * c.head_dim], c.head_dim, ctx.rope, pos, false);
  }
  if (ctx.ratio == 0) return p;
  p.comp_kv = project(w.attn_compressor_kv, p.normed, T, ctx.pool);
  p.comp_gate = project(w.attn_compressor_gate, p.normed, T, ctx.pool);
  p.comp_ape = dequantized(w.attn_compressor_ape);
  if (!ctx.sparse()) return p;
  p.idx_kv = project(w.indexer_compressor_kv, p.normed, T, ctx.pool);
  p.idx_gate = project(w.indexer_compressor_gate, p.normed, T, ctx.pool);
  p.idx_ape = dequantized(w.indexer_compressor_ape);
  p.idx_q = project(w.indexer_attn_q_b, p.q_lora, T, ctx.pool);
  p.idx_w = project(w.indexer_proj, p.normed, T, ctx.pool);
  for (int64_t t = 0; t < T; ++t)
    for (int h = 0; h < c.indexer_heads; ++h) {
      float* v = &p.idx_q[(t * c.indexer_heads + h) * c.indexer_dim];
      apply_rope_tail(v, c.indexer_dim, ctx.rope, ctx.tokens[t].pos, false);
      if (ctx.options.quantize_kv) indexer_hadamard_fp4_round_trip(v, c.indexer_dim);
    }
  return p;
}

// Stores the raw K=V row of token t (with the storage quantisation when enabled).
void push_raw_row(const LayerContext& ctx, const Projections& p, int64_t t) {
  const ModelConfig& c = ctx.config;
  const TokenRef& tok = ctx.tokens[t];
  float* row = ctx.kv[tok.seq]->raw_row(ctx.layer, tok.pos);
  if (KvUndoLog* undo = ctx.undo_log(tok.seq)) undo->save(tok.pos, row, c.head_dim);
  std::copy_n(&p.kv[t * c.head_dim], c.head_dim, row);
  if (!ctx.options.quantize_kv) return;
  fp8_e4m3_round_trip(row, c.nope_dim());
  for (int i = 0; i < c.head_dim; ++i) row[i] = round_to_f16(row[i]);
}

// Runs both compressors for token t; emitted rows are normalised, RoPE'd at the window start,
// quantised and stored.
void update_compressors(const LayerContext& ctx, const Projections& p, int64_t t) {
  const ModelConfig& c = ctx.config;
  const LayerWeights& w = ctx.w;
  const int ratio = ctx.ratio;
  if (ratio == 0) return;
  const TokenRef& tok = ctx.tokens[t];
  SequenceKv& kv = *ctx.kv[tok.seq];
  const int64_t row_index = (tok.pos + 1) / ratio - 1;
  const int64_t row_pos = tok.pos + 1 - ratio;
  std::vector<float> pooled(std::max(c.head_dim, c.indexer_dim));
  const int wa = frontier_width(ratio, c.head_dim);
  KvUndoLog* undo = ctx.undo_log(tok.seq);
  if (undo)
    compressor_save_undo(ratio, c.head_dim, tok.pos, kv.frontier_kv(ctx.layer, false), kv.frontier_score(ctx.layer, false),
                         *undo);
  if (compressor_step(ratio, c.head_dim, &p.comp_kv[t * wa], &p.comp_gate[t * wa], p.comp_ape.data(),
                      tok.pos, kv.frontier_kv(ctx.layer, false), kv.frontier_score(ctx.layer, false), pooled.data())) {
    float* row = kv.comp_row(ctx.layer, row_index);
    rms_norm(pooled.data(), w.attn_compressor_norm.f32(), c.head_dim, c.rms_eps, row);
    apply_rope_tail(row, c.head_dim, ctx.rope, row_pos, false);
    if (ctx.options.quantize_kv) fp8_e4m3_round_trip(row, c.nope_dim());
  }
  if (!ctx.sparse()) return;
  const int wi = frontier_width(ratio, c.indexer_dim);
  if (undo)
    compressor_save_undo(ratio, c.indexer_dim, tok.pos, kv.frontier_kv(ctx.layer, true), kv.frontier_score(ctx.layer, true),
                         *undo);
  if (compressor_step(ratio, c.indexer_dim, &p.idx_kv[t * wi], &p.idx_gate[t * wi], p.idx_ape.data(),
                      tok.pos, kv.frontier_kv(ctx.layer, true), kv.frontier_score(ctx.layer, true), pooled.data())) {
    float* row = kv.index_row(ctx.layer, row_index);
    rms_norm(pooled.data(), w.indexer_compressor_norm.f32(), c.indexer_dim, c.rms_eps, row);
    apply_rope_tail(row, c.indexer_dim, ctx.rope, row_pos, false);
    if (ctx.options.quantize_kv) indexer_hadamard_fp4_round_trip(row, c.indexer_dim);
  }
}

// Compressed rows token t attends to: all visible rows, or the indexer's top-k on CSA layers.
std::vector<int64_t> visible_compressed_rows(const LayerContext& ctx, const Projections& p, int64_t t) {
  const ModelConfig& c = ctx.config;
  const int ratio = ctx.ratio;
  if (ratio == 0) return {};
  const TokenRef& tok = ctx.tokens[t];
  const int64_t n_visible = (tok.pos + 1) / ratio;
  const bool sparse = ctx.sparse();
  if (!sparse || n_visible <= c.indexer_top_k) {
    std::vector<int64_t> all(n_visible);
    for (int64_t i = 0; i < n_visible; ++i) all[i] = i;
    return all;
  }
  SequenceKv& kv = *ctx.kv[tok.seq];
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.indexer_dim) * c.indexer_heads);
  const float* q = &p.idx_q[t * c.indexer_heads * c.indexer_dim];
  const float* hw = &p.idx_w[t * c.indexer_heads];
  std::vector<float> scores(n_visible);
  for (int64_t r = 0; r < n_visible; ++r) {
    const float* k = kv.index_row(ctx.layer, r);
    double s = 0.0;
    for (int h = 0; h < c.indexer_heads; ++h) {
      double d = 0.0;
      for (int i = 0; i < c.indexer_dim; ++i) d += static_cast<double>(q[h * c.indexer_dim + i]) * k[i];
      s += hw[h] * std::max(0.0, d);
    }
    scores[r] = static_cast<float>(s * scale);
  }
  return indexer_top_k(scores, c.indexer_top_k);
}

// Sink-aware attention of token t over its raw window and the given compressed rows; writes the
// n_head * head_dim output (inverse-RoPE'd) into out.
void attend(const LayerContext& ctx, const Projections& p, int64_t t, const std::vector<int64_t>& comp_rows, float* out) {
  const ModelConfig& c = ctx.config;
  const TokenRef& tok = ctx.tokens[t];
  SequenceKv& kv = *ctx.kv[tok.seq];
  std::vector<const float*> rows;
  for (int64_t q = std::max<int64_t>(kv.raw_window_start(), tok.pos - c.sliding_window + 1); q <= tok.pos; ++q) rows.push_back(kv.raw_row(ctx.layer, q));
  for (int64_t r : comp_rows) rows.push_back(kv.comp_row(ctx.layer, r));
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const float* sinks = ctx.w.attn_sinks.f32();
  ctx.pool.parallel_for(c.n_head, [&](int64_t h0, int64_t h1) {
    std::vector<double> s(rows.size());
    for (int64_t h = h0; h < h1; ++h) {
      const float* qh = &p.q[(t * c.n_head + h) * c.head_dim];
      double mx = sinks[h];
      for (size_t r = 0; r < rows.size(); ++r) {
        double d = 0.0;
        for (int i = 0; i < c.head_dim; ++i) d += static_cast<double>(qh[i]) * rows[r][i];
        s[r] = d * scale;
        mx = std::max(mx, s[r]);
      }
      double den = std::exp(sinks[h] - mx);
      std::vector<double> acc(c.head_dim, 0.0);
      for (size_t r = 0; r < rows.size(); ++r) {
        const double e = std::exp(s[r] - mx);
        den += e;
        for (int i = 0; i < c.head_dim; ++i) acc[i] += e * rows[r][i];
      }
      float* oh = out + h * c.head_dim;
      for (int i = 0; i < c.head_dim; ++i) oh[i] = static_cast<float>(acc[i] / den);
      apply_rope_tail(oh, c.head_dim, ctx.rope, tok.pos, true);
    }
  });
}

// Grouped low-rank output projection: y = out_b · concat_g(out_a[g] · heads[g]).
void output_projection(const LayerContext& ctx, const Buffer& heads, float* y) {
  const ModelConfig& c = ctx.config;
  const int64_t T = static_cast<int64_t>(ctx.tokens.size());
  const int64_t gw = c.o_group_width(), rank = c.o_lora_rank, low_width = int64_t(c.o_groups) * rank;
  Buffer low = alloc(T, low_width), group = alloc(T, gw), group_low = alloc(T, rank);
  const MatView out_a = ctx.w.attn_output_a.mat();
  for (int g = 0; g < c.o_groups; ++g) {
    for (int64_t t = 0; t < T; ++t) std::copy_n(&heads[t * c.q_dim() + g * gw], gw, &group[t * gw]);
    matmul(out_a.rows(g * rank, rank), group.data(), T, group_low.data(), ctx.pool);
    for (int64_t t = 0; t < T; ++t) std::copy_n(&group_low[t * rank], rank, &low[t * low_width + g * rank]);
  }
  matmul(ctx.w.attn_output_b.mat(), low.data(), T, y, ctx.pool);
}

}  // namespace

void attention_sublayer(const LayerContext& ctx, const float* x, float* y) {
  const int64_t T = static_cast<int64_t>(ctx.tokens.size());
  const Projections p = project_all(ctx, x);
  Buffer heads = alloc(T, ctx.config.q_dim());
  for (int64_t t = 0; t < T; ++t) {
    push_raw_row(ctx, p, t);
    update_compressors(ctx, p, t);
    const std::vector<int64_t> comp_rows = visible_compressed_rows(ctx, p, t);
    attend(ctx, p, t, comp_rows, &heads[t * ctx.config.q_dim()]);
  }
  output_projection(ctx, heads, y);
}

}  // namespace ds4
