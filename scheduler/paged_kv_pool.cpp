// PagedKvPool (see paged_kv_pool.h): KvPool calls mapped one to one onto KvCacheManager.
#include "scheduler/paged_kv_pool.h"

#include <cstdio>
#include <cstdlib>

#include "engine/kv_geometry.h"

namespace ds4 {

PagedKvPool::PagedKvPool(std::unique_ptr<KvCacheManager> manager) : manager_(std::move(manager)) {
  if (!manager_) {
    std::fprintf(stderr, "%s:%d: PagedKvPool: no manager\n", __FILE__, __LINE__);
    std::abort();
  }
}

bool PagedKvPool::admit(SeqId seq, std::span<const int32_t> tokens, int64_t cached_tokens, int64_t num_tokens) {
  return manager_->add_sequence(seq, tokens, cached_tokens, num_tokens) == KvStatus::kOk;
}

bool PagedKvPool::grow(SeqId seq, int64_t num_tokens) { return manager_->allocate(seq, num_tokens) == KvStatus::kOk; }

// The manager publishes every full block the sequence has computed (and snapshots the boundary
// when the computed positions end on one); it reads the count from the sequence itself.
void PagedKvPool::computed(SeqId seq, std::span<const int32_t> tokens, int64_t num_computed) {
  if (manager_->sequence_kv(seq).num_tokens() != num_computed) {
    std::fprintf(stderr, "%s:%d: PagedKvPool: computed count differs from the KV state\n", __FILE__, __LINE__);
    std::abort();
  }
  manager_->publish(seq, tokens);
}

KvUsage PagedKvPool::usage() const {
  const KvCacheUsage u = manager_->usage();
  return KvUsage{.block_tokens = u.block_tokens, .total_blocks = u.total_blocks, .used_blocks = u.used_blocks,
                 .cached_blocks = u.cached_blocks};
}

std::unique_ptr<PagedKvPool> make_host_paged_pool(const ModelConfig& config, int64_t budget_bytes,
                                                  int64_t max_sequences, double snapshot_fraction) {
  const KvPoolOptions options{.layout = KvLayout::kF32, .budget_bytes = budget_bytes, .max_sequences = max_sequences,
                              .snapshot_fraction = snapshot_fraction};
  return std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(plan_kv_pool(kv_geometry(config), options)));
}

}  // namespace ds4
