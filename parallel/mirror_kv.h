// MirrorSequenceKv: a follower rank's SequenceKv for one pool slot: the same addressing as the
// leader's KvCacheManager views (kvcache/kv_storage.h layout: rows of the sequence's blocks, raw
// ring and frontiers in its slot) over the follower's own host storage of the same layout, with
// the block table and position the step message carries. It never allocates: reserve() only checks
// that the message's block table covers the positions. Row pointers need host storage with f32 rows
// (the CPU backend); a device backend addresses the rows through the PagedSequenceKv slot and table.
#pragma once
#include <cstdint>
#include <vector>

#include "kvcache/kv_storage.h"
#include "kvcache/sequence_kv.h"

namespace ds4 {

class MirrorSequenceKv final : public PagedSequenceKv {
 public:
  // layout and storage must outlive the view. Throws std::invalid_argument for a slot outside the pool.
  MirrorSequenceKv(const KvPoolLayout& layout, KvStorage& storage, int64_t slot);
  // The step message's state of this slot (slot and table checked against the layout).
  void assign(std::vector<int32_t> blocks, int64_t num_tokens);
  int64_t slot() const { return slot_; }
  int64_t pool_slot() const override { return slot_; }
  const int32_t* pool_blocks() const override { return blocks_.data(); }
  int64_t pool_block_count() const override { return static_cast<int64_t>(blocks_.size()); }

  int64_t num_tokens() const override { return n_tokens_; }
  void set_num_tokens(int64_t n) override;
  bool reserve(int64_t n_tokens) override;
  float* raw_row(int layer, int64_t pos) override;
  float* comp_row(int layer, int64_t c) override;
  float* index_row(int layer, int64_t c) override;
  float* frontier_kv(int layer, bool indexer) override;
  float* frontier_score(int layer, bool indexer) override;

 private:
  const KvPoolLayout& layout_;
  KvStorage& storage_;
  int64_t slot_;
  std::vector<int32_t> blocks_;
  int64_t n_tokens_ = 0;

  const KvLayerPlacement& placement(int layer) const;
  std::byte* slot_base() const;
  float* pool_row(int pool, int pool_layer, int64_t c);
};

}  // namespace ds4
