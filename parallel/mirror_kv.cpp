// MirrorSequenceKv (see mirror_kv.h): the addressing of kvcache/kv_storage.h's layout. Misuse (a
// row outside the message's block table, a layer without such rows) is a programmer error of the
// leader / follower pairing and aborts with file:line, like the manager's own views.
#include "parallel/mirror_kv.h"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace ds4 {
namespace {

[[noreturn]] void mirror_fail(const char* what, long long a, long long b) {
  std::fprintf(stderr, "%s:%d: MirrorSequenceKv: %s (%lld, %lld)\n", __FILE__, __LINE__, what, a, b);
  std::abort();
}

float* as_f32(std::byte* p) { return reinterpret_cast<float*>(p); }

}  // namespace

MirrorSequenceKv::MirrorSequenceKv(const KvPoolLayout& layout, KvStorage& storage, int64_t slot)
    : layout_(layout), storage_(storage), slot_(slot) {
  if (slot < 0 || slot >= layout.num_slots) throw std::invalid_argument("MirrorSequenceKv: slot outside the pool");
}

void MirrorSequenceKv::assign(std::vector<int32_t> blocks, int64_t num_tokens) {
  for (int32_t b : blocks)
    if (b < 0 || b >= layout_.num_blocks) throw std::invalid_argument("step message: block id " + std::to_string(b) + " outside the pool");
  blocks_ = std::move(blocks);
  if (num_tokens > static_cast<int64_t>(blocks_.size()) * layout_.geometry.block_tokens)
    throw std::invalid_argument("step message: start position beyond the sequence's block table");
  n_tokens_ = num_tokens;
}

void MirrorSequenceKv::set_num_tokens(int64_t n) {
  if (n < 0 || n > static_cast<int64_t>(blocks_.size()) * layout_.geometry.block_tokens)
    mirror_fail("set_num_tokens outside the block table", slot_, n);
  n_tokens_ = n;
}

bool MirrorSequenceKv::reserve(int64_t n_tokens) {
  return n_tokens <= static_cast<int64_t>(blocks_.size()) * layout_.geometry.block_tokens;
}

const KvLayerPlacement& MirrorSequenceKv::placement(int layer) const {
  if (!storage_.host_accessible() || layout_.layout != KvLayout::kF32)
    mirror_fail("row pointers need host storage with f32 rows (a device backend uses the slot and block table)", layer, 0);
  if (layer < 0 || layer >= static_cast<int>(layout_.layers.size())) mirror_fail("no such layer", layer, 0);
  return layout_.layers[layer];
}

std::byte* MirrorSequenceKv::slot_base() const {
  return storage_.region(layout_.slot_region()) + slot_ * layout_.sizes.slot_bytes;
}

float* MirrorSequenceKv::raw_row(int layer, int64_t pos) {
  if (pos < 0) mirror_fail("negative raw position", layer, pos);
  const int64_t row_bytes = attention_row_bytes(layout_.geometry, layout_.layout);
  return as_f32(slot_base() + placement(layer).raw_offset + (pos % layout_.geometry.raw_ring_rows) * row_bytes);
}

float* MirrorSequenceKv::pool_row(int pool, int pool_layer, int64_t c) {
  placement(0);  // the storage check
  const KvRowPool& p = layout_.row_pools[pool];
  const int64_t block = c / p.rows_per_block;
  if (c < 0 || block >= static_cast<int64_t>(blocks_.size())) mirror_fail("compressed row outside the block table", pool, c);
  return as_f32(storage_.region(pool) + blocks_[block] * p.block_stride_bytes + pool_layer * p.layer_stride_bytes +
                (c % p.rows_per_block) * p.row_bytes);
}

float* MirrorSequenceKv::comp_row(int layer, int64_t c) {
  const KvLayerPlacement& pl = placement(layer);
  if (pl.comp_pool < 0) mirror_fail("layer has no compressed rows", layer, c);
  return pool_row(pl.comp_pool, pl.comp_pool_layer, c);
}

float* MirrorSequenceKv::index_row(int layer, int64_t c) {
  const KvLayerPlacement& pl = placement(layer);
  if (pl.index_pool < 0) mirror_fail("layer has no indexer rows", layer, c);
  return pool_row(pl.index_pool, pl.index_pool_layer, c);
}

float* MirrorSequenceKv::frontier_kv(int layer, bool indexer) {
  const int64_t offset = placement(layer).frontier_kv_offset[indexer];
  if (offset < 0) mirror_fail("layer has no such compressor", layer, indexer);
  return as_f32(slot_base() + offset);
}

float* MirrorSequenceKv::frontier_score(int layer, bool indexer) {
  const int64_t offset = placement(layer).frontier_score_offset[indexer];
  if (offset < 0) mirror_fail("layer has no such compressor", layer, indexer);
  return as_f32(slot_base() + offset);
}

}  // namespace ds4
