// MoE sub-layer of the CPU reference (MODEL.md 1.5): sqrt-softplus router, hash routing (token-id
// table) or top-k with a selection-only bias, normalised and scaled weights, SwiGLU experts with
// the clamp, plus the shared expert. Tokens are grouped by expert so each expert's weights are read
// once per call; every token accumulates its experts in expert-id order (batch invariant). Under
// expert parallelism (ctx.experts) only this rank's experts are computed: replicated mode all-reduces
// the routed sums over the ranks; data-parallel mode exchanges routes with the experts' owners
// (cpu_moe_dispatch.cpp). The shared expert is always computed locally, after the routed sum.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <vector>

#include "engine/cpu_layer.h"
#include "kernels/cpu_ops.h"

namespace ds4 {
namespace {

struct Route {
  std::vector<int> experts;     // n_expert_used ids
  std::vector<float> weights;   // matching route weights
};

Route route_token(const LayerContext& ctx, const float* logits, int32_t token) {
  const ModelConfig& c = ctx.config;
  std::vector<float> score(c.n_expert);
  for (int e = 0; e < c.n_expert; ++e) score[e] = std::sqrt(softplus(logits[e]));
  Route r;
  if (ctx.hash_routing) {
    const int32_t* row = ctx.w.ffn_gate_tid2eid.i32() + static_cast<int64_t>(token) * c.n_expert_used;
    r.experts.assign(row, row + c.n_expert_used);
  } else {
    std::vector<float> biased(score);
    if (ctx.w.exp_probs_b.present())
      for (int e = 0; e < c.n_expert; ++e) biased[e] += ctx.w.exp_probs_b.f32()[e];
    std::vector<int> order(c.n_expert);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + c.n_expert_used, order.end(),
                      [&](int a, int b) { return biased[a] != biased[b] ? biased[a] > biased[b] : a < b; });
    r.experts.assign(order.begin(), order.begin() + c.n_expert_used);
  }
  float sum = 0.0f;
  for (int e : r.experts) sum += score[e];
  const float denom = c.expert_weights_norm ? std::max(sum, 6.103515625e-5f) : 1.0f;  // 2^-14
  for (int e : r.experts) r.weights.push_back(score[e] / denom * c.expert_weights_scale);
  return r;
}

// SwiGLU with clamp: mid = silu(min(g, limit)) · clamp(u, -limit, limit) · weight.
void swiglu(const float* g, const float* u, int64_t n, float limit, float weight, float* mid) {
  for (int64_t i = 0; i < n; ++i) mid[i] = silu(std::min(g[i], limit)) * std::clamp(u[i], -limit, limit) * weight;
}

// y[t] += down · swiglu(gate · x[t], up · x[t]) for the given rows of x.
void expert_ffn(const LayerContext& ctx, const MatView& gate, const MatView& up, const MatView& down,
                const std::vector<float>& x, const std::vector<float>& weight, std::vector<float>& out) {
  const int64_t n = static_cast<int64_t>(weight.size()), ffn = gate.n_out, n_embd = ctx.config.n_embd;
  std::vector<float> g(n * ffn), u(n * ffn), mid(n * ffn);
  matmul(gate, x.data(), n, g.data(), ctx.pool);
  matmul(up, x.data(), n, u.data(), ctx.pool);
  const float limit = ctx.swiglu_limit;
  for (int64_t t = 0; t < n; ++t) swiglu(&g[t * ffn], &u[t * ffn], ffn, limit, weight[t], &mid[t * ffn]);
  out.assign(n * n_embd, 0.0f);
  matmul(down, mid.data(), n, out.data(), ctx.pool);
}

}  // namespace

void count_routed_expert(const LayerContext& ctx, int expert) {
  if (!ctx.counters) return;
  const LayerWeights& w = ctx.w;
  const auto bytes = [](const MatView& m) { return static_cast<int64_t>(m.n_out) * static_cast<int64_t>(m.row_bytes); };
  ctx.counters->unique_experts += 1;
  ctx.counters->expert_bytes +=
      bytes(w.ffn_gate_exps.expert(expert)) + bytes(w.ffn_up_exps.expert(expert)) + bytes(w.ffn_down_exps.expert(expert));
}

void routed_expert_rows(const LayerContext& ctx, int expert, const std::vector<float>& x, const std::vector<float>& weights,
                        std::vector<float>& out) {
  const LayerWeights& w = ctx.w;
  expert_ffn(ctx, w.ffn_gate_exps.expert(expert), w.ffn_up_exps.expert(expert), w.ffn_down_exps.expert(expert), x, weights,
             out);
}

namespace {

// This process's routed experts (all of them, or its shard with the all-reduce of replicated mode).
void routed_experts_local(const LayerContext& ctx, const std::vector<float>& normed, const std::vector<ExpertRoute>& routes,
                          float* y) {
  const int64_t T = static_cast<int64_t>(ctx.tokens.size()), n_embd = ctx.config.n_embd;
  // expert id -> (token, weight) list, in token order
  std::map<int, std::vector<std::pair<int64_t, float>>> by_expert;
  for (const ExpertRoute& r : routes)
    if (!ctx.experts || ctx.experts->computes(r.expert)) by_expert[r.expert].push_back({r.token, r.weight});
  std::fill(y, y + T * n_embd, 0.0f);
  std::vector<float> xs, ws, out;
  for (const auto& [e, list] : by_expert) {
    count_routed_expert(ctx, e);
    xs.resize(list.size() * n_embd);
    ws.clear();
    for (size_t i = 0; i < list.size(); ++i) {
      std::copy_n(&normed[list[i].first * n_embd], n_embd, &xs[i * n_embd]);
      ws.push_back(list[i].second);
    }
    routed_expert_rows(ctx, e, xs, ws, out);
    for (size_t i = 0; i < list.size(); ++i)
      for (int64_t d = 0; d < n_embd; ++d) y[list[i].first * n_embd + d] += out[i * n_embd + d];
  }
  // Every rank joins the sum, also with no routed token of its own (its part is then zeros).
  if (ctx.experts && ctx.experts->active()) ctx.experts->comm->all_reduce_sum(y, static_cast<size_t>(T * n_embd), nullptr);
}

}  // namespace

void moe_sublayer(const LayerContext& ctx, const float* x, float* y) {
  const ModelConfig& c = ctx.config;
  const LayerWeights& w = ctx.w;
  const int64_t T = static_cast<int64_t>(ctx.tokens.size()), n_embd = c.n_embd;
  std::vector<float> normed(x, x + T * n_embd);
  for (int64_t t = 0; t < T; ++t) rms_norm(&normed[t * n_embd], w.ffn_norm.f32(), n_embd, c.rms_eps, &normed[t * n_embd]);
  std::vector<float> logits(T * c.n_expert);
  matmul(w.ffn_gate_inp.mat(), normed.data(), T, logits.data(), ctx.pool);

  std::vector<ExpertRoute> routes;
  for (int64_t t = 0; t < T; ++t) {
    const Route r = route_token(ctx, &logits[t * c.n_expert], ctx.tokens[t].token);
    for (size_t k = 0; k < r.experts.size(); ++k) routes.push_back({t, r.experts[k], r.weights[k]});
  }
  if (ctx.experts && ctx.experts->active() && ctx.experts->data_parallel)
    routed_experts_data_parallel(ctx, normed, routes, y);
  else
    routed_experts_local(ctx, normed, routes, y);
  std::vector<float> ones(T, 1.0f), out;
  expert_ffn(ctx, w.ffn_gate_shexp.mat(), w.ffn_up_shexp.mat(), w.ffn_down_shexp.mat(), normed, ones, out);
  for (int64_t i = 0; i < T * n_embd; ++i) y[i] += out[i];
}

}  // namespace ds4
