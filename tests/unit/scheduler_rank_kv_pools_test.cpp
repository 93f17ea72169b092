// RankKvPools (one paged pool per rank, data-parallel attention) as the scheduler sees it, without
// a backend (the forward is simulated by advancing the views): admission to the least loaded rank,
// ranks with full slots skipped, a cached prefix routing a request to the rank that holds it (unless
// that rank has no room), usage and capacity over ranks, bad pool lists refused, and the scheduler
// preempting only sequences of the rank that needs room and giving each rank its share of a step.
#include <gtest/gtest.h>

#include <stdexcept>

#include "engine/kv_geometry.h"
#include "engine/model_config.h"
#include "scheduler/rank_kv_pools.h"
#include "scheduler/scheduler.h"

namespace ds4 {
namespace {

std::vector<int32_t> tokens(int n, int32_t first) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = first + i;
  return t;
}

std::unique_ptr<PagedKvPool> pool(int64_t blocks, int64_t slots) {
  const KvPoolLayout layout = layout_kv_pool(kv_geometry(preset_tiny()), KvLayout::kF32, blocks, slots, 4);
  return std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layout));
}

RankKvPools pools(std::vector<std::pair<int64_t, int64_t>> blocks_and_slots) {
  std::vector<std::unique_ptr<PagedKvPool>> p;
  for (auto [blocks, slots] : blocks_and_slots) p.push_back(pool(blocks, slots));
  return RankKvPools(std::move(p));
}

TEST(RankKvPools, AdmitsToTheLeastLoadedRankAndSkipsFullOnes) {
  RankKvPools p = pools({{6, 2}, {8, 1}, {4, 3}});
  EXPECT_EQ(p.world(), 3);
  EXPECT_EQ(p.max_sequence_tokens(), 8 * 256);
  EXPECT_EQ(p.usage().total_blocks, 18);
  ASSERT_TRUE(p.admit(1, tokens(10, 1), 0, 10));
  EXPECT_EQ(p.rank_of(1), 1);  // no sequences anywhere: the most free blocks
  ASSERT_TRUE(p.admit(2, tokens(10, 2), 0, 10));
  EXPECT_EQ(p.rank_of(2), 0);
  ASSERT_TRUE(p.admit(3, tokens(10, 3), 0, 10));
  EXPECT_EQ(p.rank_of(3), 2);
  ASSERT_TRUE(p.admit(4, tokens(600, 4), 0, 600));  // one each: rank 1's slot is full, rank 0 has most room
  EXPECT_EQ(p.rank_of(4), 0);
  EXPECT_EQ(p.rank_of(p.kv(4)), 0);
  EXPECT_FALSE(p.admit(5, tokens(300, 5), 0, 300 + 4 * 256)) << "no rank has 6 free blocks";
  EXPECT_EQ(p.rank_of(5), -1);
  EXPECT_TRUE(p.shares_room(2, 4));
  EXPECT_FALSE(p.shares_room(1, 2));
  EXPECT_EQ(p.usage().used_blocks, 1 + 1 + 1 + 3);
  EXPECT_FALSE(p.grow(1, 9 * 256)) << "more than rank 1 holds";
  for (SeqId s : {1, 2, 3, 4}) p.release(s);
  EXPECT_EQ(p.usage().used_blocks, 0);
  EXPECT_EQ(p.rank_of(1), -1);
}

TEST(RankKvPools, ACachedPrefixRoutesToItsRankWhenThatRankHasRoom) {
  RankKvPools p = pools({{4, 3}, {4, 2}});
  const std::vector<int32_t> a = tokens(300, 1000);
  ASSERT_TRUE(p.admit(1, tokens(5, 1), 0, 5));  // rank 0 busier, so `a` goes to rank 1
  ASSERT_TRUE(p.admit(2, a, 0, 300));
  ASSERT_EQ(p.rank_of(2), 1);
  p.kv(2).set_num_tokens(256);
  p.computed(2, a, 256);
  p.release(2);
  std::vector<int32_t> b = a;
  b.resize(290);
  ASSERT_EQ(p.find_cached_prefix(b), 256);
  ASSERT_TRUE(p.admit(3, b, 256, 290));
  EXPECT_EQ(p.rank_of(3), 1) << "the prefix is on rank 1 although rank 1 is now as busy as rank 0";
  EXPECT_EQ(p.kv(3).num_tokens(), 256);
  p.release(3);
  // Rank 1 full (its two slots taken): the prefix is not offered, and the sequence goes elsewhere.
  for (SeqId s : {4, 5, 7}) ASSERT_TRUE(p.admit(s, tokens(5, int32_t(s)), 0, 5));
  ASSERT_EQ(p.rank_of(4), 1);
  ASSERT_EQ(p.rank_of(5), 0);  // one sequence each, the same room: the lower rank
  ASSERT_EQ(p.rank_of(7), 1);
  EXPECT_EQ(p.find_cached_prefix(b), 0);
  ASSERT_TRUE(p.admit(6, b, 0, 290));
  EXPECT_EQ(p.rank_of(6), 0);
}

TEST(RankKvPools, RefusesBadPoolLists) {
  EXPECT_THROW(RankKvPools({}), std::invalid_argument);
  std::vector<std::unique_ptr<PagedKvPool>> with_null;
  with_null.push_back(pool(4, 1));
  with_null.push_back(nullptr);
  EXPECT_THROW(RankKvPools(std::move(with_null)), std::invalid_argument);
}

// Rank 0 holds the older sequence (511 prompt tokens in its two blocks), rank 1 the newer one; when
// the older one needs a third block, releasing the newer one (another rank) would not help: the
// older one is preempted, the newer one keeps running.
TEST(RankKvPools, TheSchedulerPreemptsOnlyOnTheRankThatNeedsRoom) {
  RankKvPools p = pools({{2, 2}, {2, 2}});
  Scheduler scheduler({.max_num_seqs = 4, .max_num_batched_tokens = 2048, .max_model_len = 1024}, p, -1);
  for (RequestId id : {1, 2}) {
    auto seq = std::make_unique<Sequence>();
    seq->id = id;
    seq->tokens = tokens(id == 1 ? 511 : 20, int32_t(id) * 1000);
    seq->num_prompt_tokens = seq->num_tokens();
    seq->request.max_tokens = 400;
    seq->stream = std::make_shared<RequestStream>(id, 4096);
    scheduler.add(std::move(seq));
  }
  int preempted = 0;
  for (int step = 0; step < 8 && preempted == 0; ++step) {  // prefill, then decodes until rank 0 is full
    ScheduledBatch batch = scheduler.schedule();
    preempted = batch.num_preempted;
    if (step == 0) {
      ASSERT_EQ(p.rank_of(1), 0);
      ASSERT_EQ(p.rank_of(2), 1);
    }
    std::vector<SampledToken> sampled(batch.entries.size());
    for (size_t i = 0; i < batch.entries.size(); ++i) {
      const ScheduledSequence& e = batch.entries[i];
      p.kv(e.seq->id).set_num_tokens(e.start + e.num_tokens);  // what the forward would leave
      sampled[i].token = 7;
    }
    scheduler.update(batch, sampled);
  }
  EXPECT_EQ(preempted, 1);
  EXPECT_EQ(p.rank_of(1), -1) << "the sequence that needed room was not the one preempted";
  EXPECT_EQ(p.rank_of(2), 1) << "the sequence on the other rank was preempted";
}

// Each rank computes its own sequences' tokens, so the step's budget is split per rank: with 128
// tokens for two ranks, a rank's 300-token prompt takes its 64 and the other rank's prompt the
// other 64 (one shared budget would give the first prompt all 128 and leave rank 1 idle); the third
// prompt waits while both shares are spent.
TEST(RankKvPools, EachRankGetsItsShareOfTheStepsTokens) {
  RankKvPools p = pools({{8, 4}, {8, 4}});
  Scheduler scheduler({.max_num_seqs = 8, .max_num_batched_tokens = 128, .max_model_len = 2048}, p, -1);
  for (RequestId id : {1, 2, 3}) {
    auto seq = std::make_unique<Sequence>();
    seq->id = id;
    seq->tokens = tokens(300, int32_t(id) * 1000);
    seq->num_prompt_tokens = seq->num_tokens();
    seq->request.max_tokens = 4;
    seq->stream = std::make_shared<RequestStream>(id, 4096);
    scheduler.add(std::move(seq));
  }
  for (int step = 0; step < 2; ++step) {
    const ScheduledBatch batch = scheduler.schedule();
    std::vector<int64_t> per_rank(2, 0);
    for (const ScheduledSequence& e : batch.entries) per_rank[size_t(p.rank_of(e.seq->id))] += e.num_tokens;
    EXPECT_EQ(per_rank, (std::vector<int64_t>{64, 64})) << "step " << step;
    EXPECT_EQ(batch.entries.size(), 2u) << "step " << step;
    EXPECT_EQ(scheduler.num_running(), 2u);
    EXPECT_EQ(scheduler.num_waiting(), 1u);
    std::vector<SampledToken> none(batch.entries.size());
    for (const ScheduledSequence& e : batch.entries) p.kv(e.seq->id).set_num_tokens(e.start + e.num_tokens);
    scheduler.update(batch, none);
  }
}

}  // namespace
}  // namespace ds4
