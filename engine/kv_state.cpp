// ContiguousKv: the in-memory SequenceKv (see kv_state.h).
#include "engine/kv_state.h"

#include <cstdio>
#include <cstdlib>

namespace ds4 {
namespace {

void init_frontier(std::vector<float>& kv, std::vector<float>& score, int ratio, int row_dim) {
  const size_t n = static_cast<size_t>(frontier_rows(ratio)) * frontier_width(ratio, row_dim);
  kv.assign(n, 0.0f);
  score.assign(n, kEmptyScore);
}

[[noreturn]] void fail(const char* what, int layer, int64_t index) {
  std::fprintf(stderr, "%s:%d: ContiguousKv: %s (layer %d, index %lld)\n", __FILE__, __LINE__, what, layer,
               static_cast<long long>(index));
  std::abort();
}

}  // namespace

ContiguousKv::ContiguousKv(const ModelConfig& config, int raw_ring_rows)
    : config_(config), ring_rows_(raw_ring_rows > 0 ? raw_ring_rows : config.sliding_window), layers_(config.n_layer) {
  if (ring_rows_ < config.sliding_window) fail("raw ring smaller than the sliding window", -1, ring_rows_);
  for (int il = 0; il < config.n_layer; ++il) {
    Layer& l = layers_[il];
    l.raw.assign(static_cast<size_t>(ring_rows_) * config.head_dim, 0.0f);
    const int ratio = config.compress_ratio(il);
    if (ratio == 0) continue;
    init_frontier(l.attn_frontier.kv, l.attn_frontier.score, ratio, config.head_dim);
    if (config.attention_kind(il) == AttentionKind::kCompressedSparse)
      init_frontier(l.index_frontier.kv, l.index_frontier.score, ratio, config.indexer_dim);
  }
}

bool ContiguousKv::reserve(int64_t n_tokens) {
  for (int il = 0; il < config_.n_layer; ++il) {
    const int ratio = config_.compress_ratio(il);
    if (ratio == 0) continue;
    const size_t n_comp = static_cast<size_t>(n_tokens / ratio);
    Layer& l = layers_[il];
    if (l.comp.size() < n_comp * config_.head_dim) l.comp.resize(n_comp * config_.head_dim);
    if (config_.attention_kind(il) == AttentionKind::kCompressedSparse && l.index.size() < n_comp * config_.indexer_dim)
      l.index.resize(n_comp * config_.indexer_dim);
  }
  return true;
}

float* ContiguousKv::raw_row(int layer, int64_t pos) {
  if (pos < 0) fail("negative raw position", layer, pos);
  const int64_t slot = pos % ring_rows_;
  return layers_.at(layer).raw.data() + slot * config_.head_dim;
}

float* ContiguousKv::comp_row(int layer, int64_t c) {
  Layer& l = layers_.at(layer);
  if (c < 0 || static_cast<size_t>(c + 1) * config_.head_dim > l.comp.size()) fail("compressed row not reserved", layer, c);
  return l.comp.data() + c * config_.head_dim;
}

float* ContiguousKv::index_row(int layer, int64_t c) {
  Layer& l = layers_.at(layer);
  if (c < 0 || static_cast<size_t>(c + 1) * config_.indexer_dim > l.index.size()) fail("indexer row not reserved", layer, c);
  return l.index.data() + c * config_.indexer_dim;
}

float* ContiguousKv::frontier_kv(int layer, bool indexer) {
  Layer& l = layers_.at(layer);
  auto& v = indexer ? l.index_frontier.kv : l.attn_frontier.kv;
  if (v.empty()) fail("layer has no such compressor", layer, indexer);
  return v.data();
}

float* ContiguousKv::frontier_score(int layer, bool indexer) {
  Layer& l = layers_.at(layer);
  auto& v = indexer ? l.index_frontier.score : l.attn_frontier.score;
  if (v.empty()) fail("layer has no such compressor", layer, indexer);
  return v.data();
}

}  // namespace ds4
