// The paged KV pool under the real CPU forward pass on the demo model (ratio-4 and ratio-128
// layers, window 32): the pool gives the same logits as ContiguousKv bit for bit; a prefix-cache
// hit at several block boundaries (up to 1024 positions: 256 ratio-4 and 8 ratio-128 windows
// closed, the indexer selecting) resumes exactly; a sequence whose cached blocks were evicted, in
// part or whole, recomputes to identical logits. The CPU backend is deterministic, so equality is exact.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>

#include "engine/cpu_backend.h"
#include "engine/kv_geometry.h"
#include "engine/model.h"
#include "kvcache/kv_cache_manager.h"

namespace ds4 {
namespace {

constexpr int kBlock = kKvBlockTokens;

const Model& demo_model() {
  static std::unique_ptr<Model> model = load_model(std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf");
  return *model;
}

std::vector<int32_t> random_tokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % 128000);
  return t;
}

std::vector<int32_t> concat(std::span<const int32_t> a, std::span<const int32_t> b) {
  std::vector<int32_t> t(a.begin(), a.end());
  t.insert(t.end(), b.begin(), b.end());
  return t;
}

std::vector<float> forward(CpuBackend& backend, SequenceKv& kv, std::span<const int32_t> tokens, bool all_logits) {
  ForwardBatch batch;
  batch.sequences.push_back({&kv, tokens, all_logits});
  return backend.forward(batch).logits;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return !a.empty() && a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Chunk ends for a prompt of n tokens: every block boundary, then n.
std::vector<int64_t> block_chunk_ends(int64_t from, int64_t n) {
  std::vector<int64_t> ends;
  for (int64_t e = (from / kBlock + 1) * kBlock; e < n; e += kBlock) ends.push_back(e);
  ends.push_back(n);
  return ends;
}

// Runs tokens[kv.num_tokens(), n) through the pool in block-aligned chunks, publishing after each;
// returns the last-token logits of every chunk.
std::vector<std::vector<float>> run_pool(CpuBackend& backend, KvCacheManager& pool, KvSeqId id, const std::vector<int32_t>& tokens) {
  std::vector<std::vector<float>> out;
  SequenceKv& kv = pool.sequence_kv(id);
  for (int64_t end : block_chunk_ends(kv.num_tokens(), static_cast<int64_t>(tokens.size()))) {
    const int64_t start = kv.num_tokens();
    EXPECT_EQ(pool.allocate(id, end), KvStatus::kOk);
    out.push_back(forward(backend, kv, std::span<const int32_t>(tokens).subspan(start, end - start), false));
    pool.publish(id, tokens);
  }
  return out;
}

KvPoolLayout demo_pool(int64_t blocks, int64_t slots, int64_t snapshots) {
  return layout_kv_pool(kv_geometry(demo_model().config), KvLayout::kF32, blocks, slots, snapshots);
}

TEST(KvExact, PoolMatchesContiguousAndHitsResumeExactly) {
  const Model& m = demo_model();
  CpuBackend backend(m.config, m.weights);
  const int64_t n = 4 * kBlock;
  std::vector<int32_t> t = random_tokens(n + 200, 1);
  t[0] = 0;

  // Cold reference with ContiguousKv, in the same block-aligned chunks; its state kept at each boundary.
  ContiguousKv cold(m.config);
  std::map<int64_t, ContiguousKv> cold_at;
  std::vector<std::vector<float>> cold_logits;
  for (int64_t end = kBlock; end <= n; end += kBlock) {
    cold_logits.push_back(forward(backend, cold, std::span<const int32_t>(t).subspan(end - kBlock, kBlock), false));
    cold_at.emplace(end, cold);
  }

  KvCacheManager pool(demo_pool(32, 8, 8));
  const std::vector<int32_t> prompt(t.begin(), t.begin() + n);
  ASSERT_EQ(pool.add_sequence(1, prompt, 0, 0), KvStatus::kOk);
  const auto pool_logits = run_pool(backend, pool, 1, prompt);
  ASSERT_EQ(pool_logits.size(), cold_logits.size());
  for (size_t i = 0; i < cold_logits.size(); ++i) EXPECT_TRUE(bit_equal(pool_logits[i], cold_logits[i])) << "chunk " << i;
  EXPECT_EQ(pool.usage().snapshots, 4);

  // New continuations after the cached prefix at several boundaries, all logits compared.
  KvSeqId id = 2;
  for (int64_t b : {kBlock, 2 * kBlock, 4 * kBlock}) {
    SCOPED_TRACE(b);
    std::vector<int32_t> tail = random_tokens(12, 100 + static_cast<uint32_t>(b));
    tail[0] = (t[b] + 1) % 128000;  // diverges right at the boundary
    const std::vector<int32_t> s = concat(std::span<const int32_t>(t).first(b), tail);
    ASSERT_EQ(pool.find_cached_prefix(s), b);
    ASSERT_EQ(pool.add_sequence(id, s, b, static_cast<int64_t>(s.size())), KvStatus::kOk);
    EXPECT_EQ(pool.sequence_kv(id).num_tokens(), b);
    const auto hit = forward(backend, pool.sequence_kv(id), tail, true);
    ContiguousKv ref = cold_at.at(b);
    EXPECT_TRUE(bit_equal(hit, forward(backend, ref, tail, true)));
    ++id;
  }

  // A prompt diverging inside a block resumes at the block before, here in a batch with a second hit.
  const std::vector<int32_t> mid(t.begin(), t.begin() + 3 * kBlock + 40);
  std::vector<int32_t> other = concat(std::span<const int32_t>(t).first(kBlock), random_tokens(20, 7));
  ASSERT_EQ(pool.find_cached_prefix(mid), 3 * kBlock);
  ASSERT_EQ(pool.find_cached_prefix(other), kBlock);
  ASSERT_EQ(pool.add_sequence(10, mid, 3 * kBlock, static_cast<int64_t>(mid.size())), KvStatus::kOk);
  ASSERT_EQ(pool.add_sequence(11, other, kBlock, static_cast<int64_t>(other.size())), KvStatus::kOk);
  ForwardBatch batch;
  const std::span<const int32_t> mid_new = std::span<const int32_t>(mid).subspan(3 * kBlock);
  const std::span<const int32_t> other_new = std::span<const int32_t>(other).subspan(kBlock);
  batch.sequences.push_back({&pool.sequence_kv(10), mid_new, false});
  batch.sequences.push_back({&pool.sequence_kv(11), other_new, true});
  const ForwardOutput out = backend.forward(batch);
  ContiguousKv ref_mid = cold_at.at(3 * kBlock), ref_other = cold_at.at(kBlock);
  const auto expect_mid = forward(backend, ref_mid, mid_new, false);
  const auto expect_other = forward(backend, ref_other, other_new, true);
  EXPECT_TRUE(bit_equal(std::vector<float>(out.row(0), out.row(0) + m.config.n_vocab), expect_mid));
  EXPECT_TRUE(bit_equal(std::vector<float>(out.row(1), out.row(1) + out.n_rows[1] * m.config.n_vocab), expect_other));
  EXPECT_EQ(pool.usage().prefix_hit_tokens, (1 + 2 + 4 + 3 + 1) * kBlock);
  EXPECT_EQ(pool.check_invariants(), "");
}

TEST(KvExact, EvictedAndRecomputedGivesIdenticalLogits) {
  const Model& m = demo_model();
  CpuBackend backend(m.config, m.weights);
  std::vector<int32_t> t = random_tokens(4 * kBlock + 60, 2);
  t[0] = 0;
  KvCacheManager pool(demo_pool(6, 2, 8));

  ASSERT_EQ(pool.add_sequence(1, t, 0, 0), KvStatus::kOk);
  const auto first = run_pool(backend, pool, 1, t);
  ASSERT_EQ(first.size(), 5u);
  pool.free(1);
  EXPECT_EQ(pool.usage().cached_blocks, 4);

  // A filler takes 4 blocks: the 2 free ones, then evicts the prompt's last two cached blocks.
  const std::vector<int32_t> filler = random_tokens(8, 3);
  ASSERT_EQ(pool.add_sequence(2, filler, 0, 4 * kBlock), KvStatus::kOk);
  EXPECT_EQ(pool.usage().evicted_blocks, 2);
  pool.free(2);
  ASSERT_EQ(pool.find_cached_prefix(t), 2 * kBlock);
  ASSERT_EQ(pool.add_sequence(3, t, 2 * kBlock, 0), KvStatus::kOk);
  const auto partial = run_pool(backend, pool, 3, t);
  ASSERT_EQ(partial.size(), 3u);
  for (size_t i = 0; i < partial.size(); ++i) EXPECT_TRUE(bit_equal(partial[i], first[2 + i])) << "chunk " << 2 + i;
  pool.free(3);

  // Everything evicted: a cold recomputation through recycled blocks.
  ASSERT_EQ(pool.find_cached_prefix(t), 4 * kBlock);
  ASSERT_EQ(pool.add_sequence(4, filler, 0, 6 * kBlock), KvStatus::kOk);
  EXPECT_EQ(pool.usage().cached_blocks, 0);
  pool.free(4);
  ASSERT_EQ(pool.find_cached_prefix(t), 0);
  ASSERT_EQ(pool.add_sequence(5, t, 0, 0), KvStatus::kOk);
  const auto again = run_pool(backend, pool, 5, t);
  ASSERT_EQ(again.size(), first.size());
  for (size_t i = 0; i < again.size(); ++i) EXPECT_TRUE(bit_equal(again[i], first[i])) << "chunk " << i;
  pool.free(5);
  EXPECT_EQ(pool.usage().used_blocks, 0);
  EXPECT_EQ(pool.check_invariants(), "");
}

}  // namespace
}  // namespace ds4
