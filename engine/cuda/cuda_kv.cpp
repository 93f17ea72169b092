// Device KV pool and per-sequence handles (see cuda_kv.h).
#include "engine/cuda/cuda_kv.h"

#include <cstdio>
#include <cstdlib>

#include "engine/load_error.h"
#include "kernels/cuda/ops.h"

namespace ds4 {
namespace {

using cuda::kKvBlockPositions;

[[noreturn]] void kv_fail(const char* what, int layer, int64_t index) {
  std::fprintf(stderr, "%s:%d: CudaSequenceKv: %s (layer %d, index %lld)\n", __FILE__, __LINE__, what, layer,
               static_cast<long long>(index));
  std::abort();
}

size_t floats(int64_t n) { return sizeof(float) * static_cast<size_t>(n); }

}  // namespace

CudaKvPool::CudaKvPool(const ModelConfig& c, int max_seqs, int64_t n_blocks)
    : config_(c), max_seqs_(max_seqs), layers_(c.n_layer) {
  if (max_seqs <= 0 || n_blocks <= 0) throw LoadError("CudaKvPool: need at least one slot and one block");
  for (int il = 0; il < c.n_layer; ++il) {
    const int ratio = c.compress_ratio(il);
    Layer& l = layers_[il];
    l.raw.grow(floats(int64_t(max_seqs) * c.sliding_window * c.head_dim));
    if (ratio == 0) continue;
    if (kKvBlockPositions % ratio != 0)
      throw LoadError("CudaKvPool: compress ratio " + std::to_string(ratio) + " of layer " + std::to_string(il) +
                      " does not divide the KV block of " + std::to_string(kKvBlockPositions) + " positions");
    const int64_t rows = n_blocks * (kKvBlockPositions / ratio);
    l.comp.grow(floats(rows * c.head_dim));
    const int64_t frontier = int64_t(max_seqs) * frontier_rows(ratio) * frontier_width(ratio, c.head_dim);
    l.frontier_kv[0].grow(floats(frontier));
    l.frontier_score[0].grow(floats(frontier));
    if (c.attention_kind(il) != AttentionKind::kCompressedSparse) continue;
    l.index.grow(floats(rows * c.indexer_dim));
    const int64_t idx_frontier = int64_t(max_seqs) * frontier_rows(ratio) * frontier_width(ratio, c.indexer_dim);
    l.frontier_kv[1].grow(floats(idx_frontier));
    l.frontier_score[1].grow(floats(idx_frontier));
  }
  for (int s = max_seqs - 1; s >= 0; --s) free_slots_.push_back(s);
  for (int64_t b = n_blocks - 1; b >= 0; --b) free_blocks_.push_back(static_cast<int32_t>(b));
}

uint64_t CudaKvPool::bytes() const {
  uint64_t total = 0;
  for (const Layer& l : layers_) {
    total += l.raw.bytes() + l.comp.bytes() + l.index.bytes();
    for (int i = 0; i < 2; ++i) total += l.frontier_kv[i].bytes() + l.frontier_score[i].bytes();
  }
  return total;
}

uint64_t CudaKvPool::block_bytes(const ModelConfig& c) {
  uint64_t total = 0;
  for (int il = 0; il < c.n_layer; ++il) {
    const int ratio = c.compress_ratio(il);
    if (ratio == 0) continue;
    const int64_t rows = kKvBlockPositions / ratio;
    total += floats(rows * c.head_dim);
    if (c.attention_kind(il) == AttentionKind::kCompressedSparse) total += floats(rows * c.indexer_dim);
  }
  return total;
}

uint64_t CudaKvPool::slot_bytes(const ModelConfig& c) {
  uint64_t total = 0;
  for (int il = 0; il < c.n_layer; ++il) {
    total += floats(int64_t(c.sliding_window) * c.head_dim);
    const int ratio = c.compress_ratio(il);
    if (ratio == 0) continue;
    total += 2 * floats(int64_t(frontier_rows(ratio)) * frontier_width(ratio, c.head_dim));
    if (c.attention_kind(il) == AttentionKind::kCompressedSparse)
      total += 2 * floats(int64_t(frontier_rows(ratio)) * frontier_width(ratio, c.indexer_dim));
  }
  return total;
}

std::unique_ptr<CudaSequenceKv> CudaKvPool::new_sequence(cudaStream_t stream) {
  if (free_slots_.empty()) return nullptr;
  const int slot = free_slots_.back();
  free_slots_.pop_back();
  for (int il = 0; il < config_.n_layer; ++il) {
    const int ratio = config_.compress_ratio(il);
    if (ratio == 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (!layers_[il].frontier_kv[i].get()) continue;
      const int dim = i == 0 ? config_.head_dim : config_.indexer_dim;
      const int64_t n = int64_t(frontier_rows(ratio)) * frontier_width(ratio, dim);
      cuda::fill(layers_[il].frontier_kv[i].as<float>() + slot * n, n, 0.0f, stream);
      cuda::fill(layers_[il].frontier_score[i].as<float>() + slot * n, n, kEmptyScore, stream);
    }
  }
  return std::unique_ptr<CudaSequenceKv>(new CudaSequenceKv(this, slot));
}

cuda::LayerKv CudaKvPool::layer(int il) const {
  const Layer& l = layers_.at(il);
  cuda::LayerKv kv;
  kv.raw = l.raw.as<float>();
  kv.comp = l.comp.as<float>();
  kv.index = l.index.as<float>();
  kv.window = config_.sliding_window;
  kv.head_dim = config_.head_dim;
  kv.indexer_dim = config_.indexer_dim;
  kv.ratio = config_.compress_ratio(il);
  kv.rows_per_block = kv.ratio > 0 ? kKvBlockPositions / kv.ratio : 0;
  return kv;
}

float* CudaKvPool::frontier(int il, bool indexer, bool score) const {
  const Layer& l = layers_.at(il);
  return (score ? l.frontier_score : l.frontier_kv)[indexer ? 1 : 0].as<float>();
}

bool CudaKvPool::take_blocks(size_t count, std::vector<int32_t>& blocks) {
  if (free_blocks_.size() < count) return false;
  for (size_t i = 0; i < count; ++i) {
    blocks.push_back(free_blocks_.back());
    free_blocks_.pop_back();
  }
  return true;
}

void CudaKvPool::release(int slot, const std::vector<int32_t>& blocks) {
  free_slots_.push_back(slot);
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) free_blocks_.push_back(*it);
}

CudaSequenceKv::~CudaSequenceKv() { pool_->release(slot_, blocks_); }

bool CudaSequenceKv::reserve(int64_t n_tokens) {
  const size_t needed = static_cast<size_t>((n_tokens + kKvBlockPositions - 1) / kKvBlockPositions);
  if (needed <= blocks_.size()) return true;
  return pool_->take_blocks(needed - blocks_.size(), blocks_);
}

float* CudaSequenceKv::raw_row(int layer, int64_t pos) {
  if (pos < 0) kv_fail("negative raw position", layer, pos);
  const cuda::LayerKv kv = pool_->layer(layer);
  return kv.raw + (int64_t(slot_) * kv.window + pos % kv.window) * kv.head_dim;
}

float* CudaSequenceKv::comp_row(int layer, int64_t c) {
  const cuda::LayerKv kv = pool_->layer(layer);
  if (kv.ratio == 0 || c < 0 || c / kv.rows_per_block >= static_cast<int64_t>(blocks_.size()))
    kv_fail("compressed row not reserved", layer, c);
  return kv.comp + (int64_t(blocks_[c / kv.rows_per_block]) * kv.rows_per_block + c % kv.rows_per_block) * kv.head_dim;
}

float* CudaSequenceKv::index_row(int layer, int64_t c) {
  const cuda::LayerKv kv = pool_->layer(layer);
  if (!kv.index || c < 0 || c / kv.rows_per_block >= static_cast<int64_t>(blocks_.size()))
    kv_fail("indexer row not reserved", layer, c);
  return kv.index + (int64_t(blocks_[c / kv.rows_per_block]) * kv.rows_per_block + c % kv.rows_per_block) *
                        kv.indexer_dim;
}

float* CudaSequenceKv::frontier_kv(int layer, bool indexer) {
  const ModelConfig& c = pool_->config();
  float* f = pool_->frontier(layer, indexer, false);
  if (!f) kv_fail("layer has no such compressor", layer, indexer);
  const int ratio = c.compress_ratio(layer);
  return f + int64_t(slot_) * frontier_rows(ratio) * frontier_width(ratio, indexer ? c.indexer_dim : c.head_dim);
}

float* CudaSequenceKv::frontier_score(int layer, bool indexer) {
  const ModelConfig& c = pool_->config();
  float* f = pool_->frontier(layer, indexer, true);
  if (!f) kv_fail("layer has no such compressor", layer, indexer);
  const int ratio = c.compress_ratio(layer);
  return f + int64_t(slot_) * frontier_rows(ratio) * frontier_width(ratio, indexer ? c.indexer_dim : c.head_dim);
}

}  // namespace ds4
