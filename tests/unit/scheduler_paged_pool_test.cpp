// PagedKvPool (the adapter over kvcache/'s KvCacheManager) as the scheduler sees it, without a
// backend: planning from a budget, admission limits (blocks and slots), prefix publication and a
// hit after release, usage accounting. The forward pass is simulated by advancing the view.
#include <gtest/gtest.h>

#include <stdexcept>

#include "engine/model_config.h"
#include "scheduler/paged_kv_pool.h"

namespace ds4 {
namespace {

std::vector<int32_t> tokens(int n, int32_t first) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = first + i;
  return t;
}

TEST(PagedKvPool, PlansFromABudgetAndRefusesTooSmallOnes) {
  auto pool = make_host_paged_pool(preset_tiny(), int64_t(16) << 20, 4);
  const KvUsage u = pool->usage();
  EXPECT_EQ(u.block_tokens, 256);
  EXPECT_GT(u.total_blocks, 4);
  EXPECT_EQ(u.used_blocks, 0);
  EXPECT_EQ(pool->max_sequence_tokens(), u.total_blocks * 256);
  EXPECT_TRUE(pool->aligned_chunks());
  EXPECT_THROW(make_host_paged_pool(preset_tiny(), 1024, 4), std::invalid_argument);
}

TEST(PagedKvPool, AdmitGrowPublishReleaseAndHit) {
  auto pool = make_host_paged_pool(preset_tiny(), int64_t(16) << 20, 2);
  const std::vector<int32_t> a = tokens(300, 1000);
  ASSERT_EQ(pool->find_cached_prefix(a), 0);
  ASSERT_TRUE(pool->admit(1, a, 0, 300));
  EXPECT_EQ(pool->usage().used_blocks, 2);
  SequenceKv& kv = pool->kv(1);
  EXPECT_EQ(kv.num_tokens(), 0);
  kv.set_num_tokens(256);  // what a forward pass of a 256-token chunk leaves
  pool->computed(1, a, 256);
  ASSERT_TRUE(pool->grow(1, 513));
  EXPECT_EQ(pool->usage().used_blocks, 3);
  // Slots: two sequences at most.
  ASSERT_TRUE(pool->admit(2, tokens(10, 5), 0, 10));
  EXPECT_FALSE(pool->admit(3, tokens(10, 7), 0, 10));
  pool->release(2);
  pool->release(1);
  EXPECT_EQ(pool->usage().used_blocks, 0);
  EXPECT_EQ(pool->usage().cached_blocks, 1);  // the published block stays reusable
  // A new sequence with the same first 256 tokens resumes there.
  std::vector<int32_t> b = a;
  b.resize(270);
  ASSERT_EQ(pool->find_cached_prefix(b), 256);
  ASSERT_TRUE(pool->admit(4, b, 256, 270));
  EXPECT_EQ(pool->kv(4).num_tokens(), 256);
  EXPECT_EQ(pool->usage().used_blocks, 2);
  pool->release(4);
  EXPECT_EQ(pool->manager().check_invariants(), "");
}

TEST(PagedKvPool, RefusesWhatDoesNotFitAndChangesNothing) {
  auto pool = make_host_paged_pool(preset_tiny(), int64_t(4) << 20, 4, 0.0);
  const int64_t total = pool->usage().total_blocks;
  ASSERT_GE(total, 2);
  EXPECT_FALSE(pool->admit(1, tokens(10, 1), 0, total * 256 + 1));
  EXPECT_EQ(pool->usage().used_blocks, 0);
  ASSERT_TRUE(pool->admit(1, tokens(10, 1), 0, 10));
  EXPECT_FALSE(pool->grow(1, total * 256 + 1));
  EXPECT_EQ(pool->usage().used_blocks, 1);
  pool->release(1);
}

}  // namespace
}  // namespace ds4
