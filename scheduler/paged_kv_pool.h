// PagedKvPool: the KvPool the server runs on: an adapter over kvcache/'s KvCacheManager (paged
// blocks, per-sequence slots, prefix cache with boundary snapshots). Because the manager keeps a
// resume point only where a chunk ends on a block boundary, it asks the scheduler for block-aligned
// prefill chunks. Owns the manager; used on the engine thread only.
#pragma once
#include <memory>

#include "engine/model_config.h"
#include "kvcache/kv_cache_manager.h"
#include "scheduler/kv_pool.h"

namespace ds4 {

class PagedKvPool final : public KvPool {
 public:
  explicit PagedKvPool(std::unique_ptr<KvCacheManager> manager);

  int64_t block_tokens() const override { return manager_->block_tokens(); }
  int64_t max_sequence_tokens() const override { return manager_->max_sequence_tokens(); }
  bool aligned_chunks() const override { return true; }
  int64_t find_cached_prefix(std::span<const int32_t> tokens) override { return manager_->find_cached_prefix(tokens); }
  bool admit(SeqId seq, std::span<const int32_t> tokens, int64_t cached_tokens, int64_t num_tokens) override;
  bool grow(SeqId seq, int64_t num_tokens) override;
  void computed(SeqId seq, std::span<const int32_t> tokens, int64_t num_computed) override;
  void release(SeqId seq) override { manager_->free(seq); }
  SequenceKv& kv(SeqId seq) override { return manager_->sequence_kv(seq); }
  KvUsage usage() const override;

  KvCacheManager& manager() { return *manager_; }
  const KvCacheManager& manager() const { return *manager_; }

 private:
  std::unique_ptr<KvCacheManager> manager_;
};

// A paged pool in host memory with f32 rows (what the CPU backend reads) for this model, planned
// from a memory budget: max_sequences slots, snapshot_fraction of the budget in prefix-cache resume
// points, the rest in blocks. Throws std::invalid_argument naming the problem (start-up only).
std::unique_ptr<PagedKvPool> make_host_paged_pool(const ModelConfig& config, int64_t budget_bytes,
                                                  int64_t max_sequences, double snapshot_fraction = 0.05);

}  // namespace ds4
