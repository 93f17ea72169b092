// Routed experts under data-parallel attention (docs/PARALLEL.md sections 3 and 5), CPU reference.
// Each rank routes only its own tokens; per MoE layer:
//   1. dispatch: every (token, expert) route's normalised input row, with the expert id and route
//      weight, goes to the expert's owner (an all-to-all of the row counts, then of the rows);
//   2. the owner runs its experts over every row it received, grouped by expert;
//   3. combine: the weighted outputs go back along the same segments (all-to-all, f32);
//   4. the sender adds each token's outputs in expert-id order, starting from zero.
// That is the order and the arithmetic of one process (the CPU matmul's result per row does not
// depend on the other rows), so a token's routed sum is bit-identical whatever the world size and
// whichever other sequences the ranks run. Rows travel as f32 (the CUDA plan sends bf16 inputs).
#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "engine/cpu_layer.h"

namespace ds4 {
namespace {

constexpr int64_t kRowHeader = 2;  // a dispatched row: expert id (int32 bits), route weight, then n_embd inputs

std::vector<size_t> segment_bytes(const std::vector<size_t>& rows, int64_t floats_per_row) {
  std::vector<size_t> bytes(rows.size());
  for (size_t p = 0; p < rows.size(); ++p) bytes[p] = rows[p] * static_cast<size_t>(floats_per_row) * sizeof(float);
  return bytes;
}

// Dispatch rows for every route, grouped by owner rank (route order within a group); sent_route[j]
// is the route of send row j and rows_to[p] the number of rows for rank p.
struct Dispatch {
  std::vector<float> rows;
  std::vector<size_t> sent_route;
  std::vector<size_t> rows_to;
};

Dispatch pack_dispatch(const LayerContext& ctx, const std::vector<float>& normed, const std::vector<ExpertRoute>& routes) {
  const ExpertParallel& ep = *ctx.experts;
  const int64_t n = ctx.config.n_embd;
  std::vector<std::vector<size_t>> by_owner(ep.comm->world());
  for (size_t i = 0; i < routes.size(); ++i) {
    const int owner = ep.owner(routes[i].expert);
    if (owner < 0 || owner >= ep.comm->world())
      throw CommError("data-parallel MoE: no rank owns expert " + std::to_string(routes[i].expert));
    by_owner[owner].push_back(i);
  }
  Dispatch d;
  d.rows.reserve(routes.size() * (n + kRowHeader));
  for (const std::vector<size_t>& group : by_owner) {
    d.rows_to.push_back(group.size());
    for (size_t i : group) {
      const ExpertRoute& r = routes[i];
      float id_bits;
      static_assert(sizeof(id_bits) == sizeof(int32_t));
      const int32_t id = r.expert;
      std::memcpy(&id_bits, &id, sizeof(id));
      d.rows.push_back(id_bits);
      d.rows.push_back(r.weight);
      d.rows.insert(d.rows.end(), &normed[r.token * n], &normed[r.token * n] + n);
      d.sent_route.push_back(i);
    }
  }
  return d;
}

// Owner side: every received row through its expert (grouped by expert, arrival order within),
// out [n_rows, n_embd] in the order received.
void run_received_rows(const LayerContext& ctx, const std::vector<float>& rows, size_t n_rows, std::vector<float>& out) {
  const int64_t n = ctx.config.n_embd, stride = n + kRowHeader;
  std::map<int, std::vector<size_t>> by_expert;
  for (size_t i = 0; i < n_rows; ++i) {
    int32_t expert;
    std::memcpy(&expert, &rows[i * stride], sizeof(expert));
    if (!ctx.experts->shard.owns(expert))
      throw CommError("data-parallel MoE: rank " + std::to_string(ctx.experts->comm->rank()) + " received a row for expert " +
                      std::to_string(expert) + ", which it does not own");
    by_expert[expert].push_back(i);
  }
  out.assign(n_rows * n, 0.0f);
  std::vector<float> xs, ws, result;
  for (const auto& [expert, list] : by_expert) {
    count_routed_expert(ctx, expert);
    xs.resize(list.size() * n);
    ws.clear();
    for (size_t k = 0; k < list.size(); ++k) {
      ws.push_back(rows[list[k] * stride + 1]);
      std::copy_n(&rows[list[k] * stride + kRowHeader], n, &xs[k * n]);
    }
    routed_expert_rows(ctx, expert, xs, ws, result);
    for (size_t k = 0; k < list.size(); ++k) std::copy_n(&result[k * n], n, &out[list[k] * n]);
  }
}

}  // namespace

void routed_experts_data_parallel(const LayerContext& ctx, const std::vector<float>& normed,
                                  const std::vector<ExpertRoute>& routes, float* y) {
  Communicator& comm = *ctx.experts->comm;
  const int64_t T = static_cast<int64_t>(ctx.tokens.size()), n = ctx.config.n_embd, stride = n + kRowHeader;
  const Dispatch d = pack_dispatch(ctx, normed, routes);
  const std::vector<size_t> rows_from = all_to_all_counts(comm, d.rows_to);
  const size_t n_received = std::accumulate(rows_from.begin(), rows_from.end(), size_t{0});
  std::vector<float> received(n_received * stride);
  comm.all_to_all_v(d.rows.data(), segment_bytes(d.rows_to, stride), received.data(), segment_bytes(rows_from, stride),
                    nullptr);
  std::vector<float> outputs;
  run_received_rows(ctx, received, n_received, outputs);
  std::vector<float> returned(routes.size() * n);
  comm.all_to_all_v(outputs.data(), segment_bytes(rows_from, n), returned.data(), segment_bytes(d.rows_to, n), nullptr);

  std::vector<size_t> row_of_route(routes.size());
  for (size_t j = 0; j < d.sent_route.size(); ++j) row_of_route[d.sent_route[j]] = j;
  // Per token, its routes in expert-id order (stable: a repeated expert keeps the router's order).
  std::vector<size_t> order(routes.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return routes[a].token != routes[b].token ? routes[a].token < routes[b].token : routes[a].expert < routes[b].expert;
  });
  std::fill(y, y + T * n, 0.0f);
  for (size_t i : order) {
    const float* out = &returned[row_of_route[i] * n];
    float* dst = y + routes[i].token * n;
    for (int64_t k = 0; k < n; ++k) dst[k] += out[k];
  }
}

}  // namespace ds4
