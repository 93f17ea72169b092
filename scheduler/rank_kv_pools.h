// RankKvPools: the scheduler's KvPool under data-parallel attention (docs/PARALLEL.md sections 6
// and 7): one PagedKvPool per rank (pool r plans rank r's KV; only rank 0's holds memory here, the
// others record operations for their ranks), each sized from its own rank's memory. A sequence is
// admitted to one rank for its life: the rank whose prefix cache serves the longest prefix among
// the ranks with room for it, else the rank running the fewest sequences (then the most free
// blocks), which keeps the ranks' attention work even. Capacity and usage are the
// sums over ranks; a sequence can hold at most what one rank's pool holds. Preemption only picks
// victims on the sequence's own rank (shares_room), and each rank gets its share of the step's
// token budget (budget_group). Engine thread only, like every KvPool.
#pragma once
#include <memory>
#include <unordered_map>
#include <vector>

#include "scheduler/kv_pool.h"
#include "scheduler/paged_kv_pool.h"

namespace ds4 {

class RankKvPools final : public KvPool {
 public:
  // pools[r] is rank r's (at least one; the same block size everywhere). Throws
  // std::invalid_argument naming the problem.
  explicit RankKvPools(std::vector<std::unique_ptr<PagedKvPool>> pools);

  int world() const { return static_cast<int>(pools_.size()); }
  PagedKvPool& pool(int rank) { return *pools_.at(static_cast<size_t>(rank)); }
  // The rank holding an admitted seq, or -1.
  int rank_of(SeqId seq) const;
  // The rank whose pool `kv` is a view of (an admitted sequence's state), or -1.
  int rank_of(const SequenceKv& kv) const;

  int64_t block_tokens() const override { return pools_[0]->block_tokens(); }
  int64_t max_sequence_tokens() const override;
  bool aligned_chunks() const override { return true; }
  int64_t find_cached_prefix(std::span<const int32_t> tokens) override;
  bool admit(SeqId seq, std::span<const int32_t> tokens, int64_t cached_tokens, int64_t num_tokens) override;
  bool grow(SeqId seq, int64_t num_tokens) override { return owner(seq).grow(seq, num_tokens); }
  void computed(SeqId seq, std::span<const int32_t> tokens, int64_t num_computed) override {
    owner(seq).computed(seq, tokens, num_computed);
  }
  void release(SeqId seq) override;
  SequenceKv& kv(SeqId seq) override { return owner(seq).kv(seq); }
  KvUsage usage() const override;
  bool shares_room(SeqId seq, SeqId other) const override { return rank_of(seq) == rank_of(other); }
  int budget_groups() const override { return world(); }
  int budget_group(SeqId seq) const override { return rank_of(seq); }

 private:
  PagedKvPool& owner(SeqId seq);
  // Blocks rank r could give a new sequence now (free and evictable), 0 when its slots are full.
  int64_t room(int rank) const;
  // Ranks in the order admission tries them: fewest sequences first (each rank runs the attention
  // of its own, and a step lasts as long as its busiest rank), then most room, then lower rank.
  std::vector<int> by_load() const;

  std::vector<std::unique_ptr<PagedKvPool>> pools_;
  std::unordered_map<SeqId, int> rank_;  // admitted sequences
};

}  // namespace ds4
