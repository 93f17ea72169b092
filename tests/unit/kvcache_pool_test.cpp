// KvCacheManager without a model: a fake forward pass writes rows and frontiers whose values are a
// hash of the token prefix (with the ratio-4 frontier's previous-window copy of the real
// compressor), so any wrong block, lost snapshot or overwritten shared row shows up as a value
// mismatch. Targeted cases (LRU order, refcounts, duplicates, no-space atomicity, misuse aborts)
// and a long random property run of add / step / publish / preempt / free / evict on a small pool.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>

#include "kvcache/kv_cache_manager.h"

namespace ds4 {
namespace {

constexpr int kBlock = 16;

// Plain, ratio 4 with indexer, ratio 8, ratio 16 (one row per block); window 5 in a ring of 7.
KvGeometry small_geometry() {
  KvGeometry g;
  g.head_dim = 8;
  g.rope_dim = 4;
  g.indexer_dim = 4;
  g.window = 5;
  g.raw_ring_rows = 7;
  g.block_tokens = kBlock;
  g.layers = {{0, false}, {4, true}, {8, false}, {16, false}};
  return g;
}

uint64_t mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ull;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dull;
  return x ^ (x >> 33);
}

// Value j of state `kind` of layer l for the prefix whose hash is h.
float fake_value(uint64_t h, int l, int kind, int j) {
  const uint64_t x = mix(h ^ mix(uint64_t(l) * 131 + uint64_t(kind) * 7919 + uint64_t(j) + 1));
  return float(x >> 40) / float(1 << 24) - 0.5f;
}

// prefix_hash[p]: hash of tokens[0..p].
std::vector<uint64_t> prefix_hashes(const std::vector<int32_t>& tokens) {
  std::vector<uint64_t> h(tokens.size());
  uint64_t acc = 0x1234;
  for (size_t p = 0; p < tokens.size(); ++p) h[p] = acc = mix(acc ^ (uint64_t(uint32_t(tokens[p])) + 0x9e37));
  return h;
}

// The fake forward pass for positions [kv.num_tokens(), end): raw rows, frontier rows (ratio 4
// keeps the previous window in rows 0..3 like the real compressor) and emitted rows.
void fake_forward(const KvGeometry& g, SequenceKv& kv, const std::vector<int32_t>& tokens, int64_t end) {
  const std::vector<uint64_t> h = prefix_hashes(tokens);
  ASSERT_TRUE(kv.reserve(end));
  for (int64_t p = kv.num_tokens(); p < end; ++p) {
    for (int l = 0; l < g.n_layers(); ++l) {
      float* raw = kv.raw_row(l, p);
      for (int j = 0; j < g.head_dim; ++j) raw[j] = fake_value(h[p], l, 0, j);
      const int ratio = g.layers[l].ratio;
      if (ratio == 0) continue;
      for (int c = 0; c < (g.layers[l].indexer ? 2 : 1); ++c) {
        const int dim = c ? g.indexer_dim : g.head_dim, width = frontier_width(ratio, dim);
        const int phase = int(p % ratio), slot = ratio == 4 ? 4 + phase : phase;
        float* fkv = kv.frontier_kv(l, c);
        float* fsc = kv.frontier_score(l, c);
        for (int j = 0; j < width; ++j) {
          fkv[slot * width + j] = fake_value(h[p], l, 1 + c, j);
          fsc[slot * width + j] = fake_value(h[p], l, 3 + c, j);
        }
        if ((p + 1) % ratio != 0) continue;
        if (ratio == 4) {
          std::copy(fkv + 4 * width, fkv + 8 * width, fkv);
          std::copy(fsc + 4 * width, fsc + 8 * width, fsc);
        }
        float* row = c ? kv.index_row(l, (p + 1) / ratio - 1) : kv.comp_row(l, (p + 1) / ratio - 1);
        for (int j = 0; j < dim; ++j) row[j] = fake_value(h[p], l, 5 + c, j);
      }
    }
  }
  kv.set_num_tokens(end);
}

// Checks every live value of the state after n positions; returns the first mismatch or "".
std::string verify(const KvGeometry& g, SequenceKv& kv, const std::vector<int32_t>& tokens) {
  const int64_t n = kv.num_tokens();
  const std::vector<uint64_t> h = prefix_hashes(tokens);
  auto bad = [&](const char* what, int l, int64_t i) {
    return std::string(what) + " layer " + std::to_string(l) + " index " + std::to_string(i) + " at n=" + std::to_string(n);
  };
  for (int l = 0; l < g.n_layers(); ++l) {
    for (int64_t p = std::max<int64_t>(0, n - g.window); p < n; ++p)
      for (int j = 0; j < g.head_dim; ++j)
        if (kv.raw_row(l, p)[j] != fake_value(h[p], l, 0, j)) return bad("raw row", l, p);
    const int ratio = g.layers[l].ratio;
    if (ratio == 0) continue;
    for (int c = 0; c < (g.layers[l].indexer ? 2 : 1); ++c) {
      const int dim = c ? g.indexer_dim : g.head_dim, width = frontier_width(ratio, dim);
      for (int64_t r = 0; r < n / ratio; ++r) {
        const float* row = c ? kv.index_row(l, r) : kv.comp_row(l, r);
        const int64_t p = (r + 1) * ratio - 1;
        for (int j = 0; j < dim; ++j)
          if (row[j] != fake_value(h[p], l, 5 + c, j)) return bad(c ? "indexer row" : "compressed row", l, r);
      }
      // Live frontier rows: the current window's written rows, and for ratio 4 the previous window.
      const int64_t window_start = n / ratio * ratio;
      std::vector<std::pair<int, int64_t>> live;  // (frontier row, position)
      for (int64_t p = window_start; p < n; ++p) live.push_back({int((ratio == 4 ? 4 : 0) + p % ratio), p});
      if (ratio == 4 && n >= 4) {
        for (int r = 0; r < 4; ++r) live.push_back({r, window_start - 4 + r});
        for (int64_t p = n; p < window_start + 4; ++p) live.push_back({int(4 + p % 4), p - 4});  // stale copy of the previous window
      }
      for (auto [row, p] : live)
        for (int j = 0; j < width; ++j)
          if (kv.frontier_kv(l, c)[row * width + j] != fake_value(h[p], l, 1 + c, j) ||
              kv.frontier_score(l, c)[row * width + j] != fake_value(h[p], l, 3 + c, j))
            return bad("frontier row", l, row);
    }
  }
  return {};
}

std::vector<int32_t> random_tokens(std::mt19937& rng, int n, int vocab = 50) {
  std::vector<int32_t> t(n);
  for (auto& x : t) x = int32_t(rng() % vocab);
  return t;
}

// Runs tokens[0, end) through a new sequence in block-aligned chunks, publishing after each.
void run_published(KvCacheManager& m, KvSeqId id, const std::vector<int32_t>& tokens, int64_t end) {
  const KvGeometry& g = m.layout().geometry;
  ASSERT_EQ(m.add_sequence(id, tokens, 0, 0), KvStatus::kOk);
  SequenceKv& kv = m.sequence_kv(id);
  while (kv.num_tokens() < end) {
    fake_forward(g, kv, tokens, std::min<int64_t>(end, kv.num_tokens() + kBlock));
    m.publish(id, tokens);
  }
}

TEST(KvPool, HitRestoresExactStateAndSharesBlocks) {
  const KvGeometry g = small_geometry();
  KvCacheManager m(layout_kv_pool(g, KvLayout::kF32, 32, 4, 8));
  std::mt19937 rng(1);
  const std::vector<int32_t> a = random_tokens(rng, 100);
  run_published(m, 1, a, 100);
  EXPECT_EQ(verify(g, m.sequence_kv(1), a), "");
  EXPECT_EQ(m.usage().snapshots, 6);  // boundaries 16 .. 96

  std::vector<int32_t> b(a.begin(), a.begin() + 70);
  const std::vector<int32_t> tail = random_tokens(rng, 30, 1000);
  b.insert(b.end(), tail.begin(), tail.end());
  b[70] = 999;  // differs right after position 69
  const int64_t cached = m.find_cached_prefix(b);
  EXPECT_EQ(cached, 64);
  ASSERT_EQ(m.add_sequence(2, b, cached, 80), KvStatus::kOk);
  SequenceKv& kv = m.sequence_kv(2);
  EXPECT_EQ(kv.num_tokens(), 64);
  EXPECT_EQ(verify(g, kv, b), "");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(m.block_table(2)[i], m.block_table(1)[i]);
  EXPECT_NE(m.block_table(2)[4], m.block_table(1)[4]);
  fake_forward(g, kv, b, 100);
  EXPECT_EQ(verify(g, kv, b), "");
  EXPECT_EQ(verify(g, m.sequence_kv(1), a), "");  // the shared blocks were not written
  const KvCacheUsage u = m.usage();
  EXPECT_EQ(u.used_blocks, 7 + 3);
  EXPECT_EQ(u.prefix_hit_tokens, 64);
  EXPECT_EQ(u.prefix_queried_tokens, 200);
  m.free(1);
  EXPECT_EQ(m.usage().used_blocks, 7);  // the 4 shared blocks stay referenced by seq 2
  EXPECT_EQ(m.usage().cached_blocks, 2);  // seq 1's published blocks 4 and 5; its partial block 6 is free
  m.free(2);
  EXPECT_EQ(m.usage().used_blocks, 0);
  EXPECT_EQ(m.check_invariants(), "");
}

TEST(KvPool, NoHitWithoutASnapshotAndNeverTheWholePrompt) {
  const KvGeometry g = small_geometry();
  KvCacheManager m(layout_kv_pool(g, KvLayout::kF32, 32, 4, 8));
  std::mt19937 rng(2);
  const std::vector<int32_t> a = random_tokens(rng, 64);
  ASSERT_EQ(m.add_sequence(1, a, 0, 0), KvStatus::kOk);
  fake_forward(g, m.sequence_kv(1), a, 40);  // crosses boundaries 16 and 32 inside one chunk
  m.publish(1, a);
  EXPECT_EQ(m.usage().snapshots, 0);
  EXPECT_EQ(m.find_cached_prefix(a), 0);  // blocks cached, but no resume point
  fake_forward(g, m.sequence_kv(1), a, 48);
  m.publish(1, a);
  EXPECT_EQ(m.find_cached_prefix(a), 48);
  EXPECT_EQ(m.find_cached_prefix(std::span<const int32_t>(a).first(48)), 0);  // the last token is always computed
  EXPECT_EQ(m.find_cached_prefix(std::span<const int32_t>(a).first(49)), 48);
  m.free(1);
  EXPECT_EQ(m.check_invariants(), "");
}

TEST(KvPool, EvictionIsLruTailFirstAndOnlyOnDemand) {
  const KvGeometry g = small_geometry();
  KvCacheManager m(layout_kv_pool(g, KvLayout::kF32, 8, 2, 8));
  std::mt19937 rng(3);
  const std::vector<int32_t> a = random_tokens(rng, 65);
  run_published(m, 1, a, 64);
  m.free(1);
  EXPECT_EQ(m.usage().cached_blocks, 4);
  EXPECT_EQ(m.usage().free_blocks, 4);
  EXPECT_EQ(m.find_cached_prefix(a), 64);
  // 4 blocks fit without evicting anything.
  const std::vector<int32_t> b = random_tokens(rng, 80, 1000);
  ASSERT_EQ(m.add_sequence(2, b, 0, 64), KvStatus::kOk);
  EXPECT_EQ(m.usage().evicted_blocks, 0);
  EXPECT_EQ(m.find_cached_prefix(a), 64);
  // The fifth evicts a's last block (with its snapshot); a's first three blocks still resume.
  ASSERT_EQ(m.allocate(2, 80), KvStatus::kOk);
  EXPECT_EQ(m.usage().evicted_blocks, 1);
  EXPECT_EQ(m.find_cached_prefix(a), 48);
  ASSERT_EQ(m.allocate(2, 96), KvStatus::kOk);
  EXPECT_EQ(m.find_cached_prefix(a), 32);
  // The pool is full: more is refused and changes nothing.
  const KvCacheUsage before = m.usage();
  EXPECT_EQ(m.allocate(2, 200), KvStatus::kNoSpace);
  EXPECT_EQ(m.usage().cached_blocks, before.cached_blocks);
  EXPECT_EQ(m.usage().used_blocks, before.used_blocks);
  EXPECT_EQ(m.find_cached_prefix(a), 32);
  m.free(2);
  EXPECT_EQ(m.check_invariants(), "");
}

TEST(KvPool, AddSequenceIsAllOrNothing) {
  const KvGeometry g = small_geometry();
  KvCacheManager m(layout_kv_pool(g, KvLayout::kF32, 6, 2, 4));
  std::mt19937 rng(4);
  const std::vector<int32_t> a = random_tokens(rng, 40);
  run_published(m, 1, a, 32);
  m.free(1);
  const int64_t cached = m.find_cached_prefix(a);
  ASSERT_EQ(cached, 32);
  // 2 cached blocks attached + 5 new > 6 blocks: refused, the cache is untouched.
  EXPECT_EQ(m.add_sequence(2, a, cached, 7 * kBlock), KvStatus::kNoSpace);
  EXPECT_FALSE(m.contains(2));
  EXPECT_EQ(m.usage().cached_blocks, 2);
  EXPECT_EQ(m.find_cached_prefix(a), 32);
  EXPECT_EQ(m.check_invariants(), "");
  // 2 + 4 fits exactly.
  ASSERT_EQ(m.add_sequence(2, a, cached, 6 * kBlock), KvStatus::kOk);
  EXPECT_EQ(verify(g, m.sequence_kv(2), a), "");
  // Slots: one left.
  ASSERT_EQ(m.add_sequence(3, a, 0, 0), KvStatus::kOk);
  EXPECT_EQ(m.add_sequence(4, a, 0, 0), KvStatus::kNoSpace);
  m.free(3);
  m.free(2);
  EXPECT_EQ(m.usage().used_blocks, 0);
  EXPECT_EQ(m.check_invariants(), "");
}

TEST(KvPool, DuplicateBlocksStayPrivateAndSnapshotsAreShared) {
  const KvGeometry g = small_geometry();
  KvCacheManager m(layout_kv_pool(g, KvLayout::kF32, 16, 2, 8));
  std::mt19937 rng(5);
  const std::vector<int32_t> a = random_tokens(rng, 40);
  ASSERT_EQ(m.add_sequence(1, a, 0, 0), KvStatus::kOk);
  ASSERT_EQ(m.add_sequence(2, a, 0, 0), KvStatus::kOk);  // same tokens, computed cold twice
  fake_forward(g, m.sequence_kv(1), a, 40);
  m.publish(1, a);  // blocks cached, no snapshot (40 is not a boundary)
  fake_forward(g, m.sequence_kv(2), a, 32);
  m.publish(2, a);  // same keys: seq 2's blocks stay private, but its boundary state becomes seq 1's block's snapshot
  EXPECT_EQ(m.usage().snapshots, 1);
  EXPECT_EQ(m.find_cached_prefix(a), 32);
  m.free(2);
  EXPECT_EQ(m.usage().free_blocks, 16 - 3);  // seq 2's private blocks went back to free
  ASSERT_EQ(m.add_sequence(3, a, 32, 40), KvStatus::kOk);
  EXPECT_EQ(m.block_table(3)[0], m.block_table(1)[0]);
  EXPECT_EQ(verify(g, m.sequence_kv(3), a), "");
  m.free(1);
  m.free(3);
  EXPECT_EQ(m.usage().cached_blocks, 2);
  EXPECT_EQ(m.check_invariants(), "");
}

TEST(KvPool, SnapshotsAreEvictedLeastRecentlyUsedFirst) {
  const KvGeometry g = small_geometry();
  KvCacheManager m(layout_kv_pool(g, KvLayout::kF32, 32, 2, 2));
  std::mt19937 rng(6);
  const std::vector<int32_t> a = random_tokens(rng, 70);
  run_published(m, 1, a, 64);  // snapshots at 16, 32, 48, 64: only the last two stay
  EXPECT_EQ(m.usage().snapshots, 2);
  EXPECT_EQ(m.usage().evicted_snapshots, 2);
  EXPECT_EQ(m.find_cached_prefix(std::span<const int32_t>(a).first(40)), 0);
  EXPECT_EQ(m.find_cached_prefix(std::span<const int32_t>(a).first(60)), 48);
  EXPECT_EQ(m.find_cached_prefix(a), 64);
  m.free(1);
  EXPECT_EQ(m.check_invariants(), "");
}

TEST(KvPoolDeathTest, MisuseAborts) {
  const KvGeometry g = small_geometry();
  KvCacheManager m(layout_kv_pool(g, KvLayout::kF32, 4, 2, 2));
  std::vector<int32_t> a(40, 7);
  ASSERT_EQ(m.add_sequence(1, a, 0, 20), KvStatus::kOk);
  EXPECT_DEATH(m.free(2), "unknown sequence");
  EXPECT_DEATH(m.sequence_kv(1).comp_row(1, 8), "not reserved");  // 2 blocks = rows 0..7 at ratio 4
  EXPECT_DEATH(m.sequence_kv(1).frontier_kv(0, false), "no such compressor");
  EXPECT_DEATH(m.add_sequence(1, a, 0, 0), "exists already");
  EXPECT_DEATH(m.add_sequence(3, a, 16, 20), "find_cached_prefix");
  // An f16 pool (as a device pool would be): counters and reserve work, row pointers do not.
  KvCacheManager half(layout_kv_pool(g, KvLayout::kF16, 4, 1, 1));
  ASSERT_EQ(half.add_sequence(1, a, 0, 0), KvStatus::kOk);
  EXPECT_TRUE(half.sequence_kv(1).reserve(20));
  EXPECT_EQ(half.block_table(1).size(), 2u);
  half.sequence_kv(1).set_num_tokens(20);
  EXPECT_EQ(half.sequence_kv(1).num_tokens(), 20);
  EXPECT_DEATH(half.sequence_kv(1).raw_row(0, 0), "host storage with f32 rows");
  BlockPool pool(2, kBlock);
  int64_t evicted = 0;
  const int32_t b = pool.take(&evicted);
  pool.unref(b);
  EXPECT_DEATH(pool.unref(b), "double free");
}

// The property run: random interleavings on a small pool, checked after every operation.
struct Live {
  std::vector<int32_t> tokens;  // ids of positions computed and to compute
};

class PropertyRun {
 public:
  PropertyRun(uint32_t seed, int64_t blocks, int64_t slots, int64_t snapshots)
      : g_(small_geometry()), m_(layout_kv_pool(g_, KvLayout::kF32, blocks, slots, snapshots)), rng_(seed) {
    for (int d = 0; d < 4; ++d) docs_.push_back(random_tokens(rng_, 220, 6));  // small vocab: prefixes recur
  }

  void run(int ops) {
    for (int i = 0; i < ops; ++i) {
      const uint32_t op = rng_() % 100;
      if (op < 25) add();
      else if (op < 85) step();
      else if (op < 95) finish();
      else verify_all();
      ASSERT_EQ(m_.check_invariants(), "") << "after op " << i;
      if (::testing::Test::HasFatalFailure()) return;
    }
  }

  void drain_and_check_fully_free() {
    while (!live_.empty()) finish();
    const KvCacheUsage u = m_.usage();
    EXPECT_EQ(u.used_blocks, 0);
    EXPECT_EQ(u.sequences, 0);
    EXPECT_EQ(u.free_blocks + u.cached_blocks, u.total_blocks);
    EXPECT_EQ(u.prefix_hit_tokens, hit_tokens_);
    EXPECT_EQ(u.prefix_queried_tokens, queried_tokens_);
    // Every block can be taken again: the cache gives way to one sequence of the whole pool.
    const int64_t evicted = u.evicted_blocks;
    ASSERT_EQ(m_.add_sequence(next_id_, docs_[0], 0, m_.max_sequence_tokens()), KvStatus::kOk);
    EXPECT_EQ(m_.usage().used_blocks, u.total_blocks);
    EXPECT_EQ(m_.usage().evicted_blocks, evicted + u.cached_blocks);
    EXPECT_EQ(m_.usage().snapshots, 0);
    EXPECT_EQ(m_.allocate(next_id_, m_.max_sequence_tokens() + 1), KvStatus::kNoSpace);
    m_.free(next_id_);
    EXPECT_EQ(m_.usage().free_blocks, u.total_blocks);
    EXPECT_EQ(m_.check_invariants(), "");
    std::printf("ops done: %lld hits (%lld of %lld tokens), %lld block and %lld snapshot evictions, %lld preemptions\n",
                static_cast<long long>(hits_), static_cast<long long>(hit_tokens_), static_cast<long long>(queried_tokens_),
                static_cast<long long>(m_.usage().evicted_blocks - u.cached_blocks),
                static_cast<long long>(u.evicted_snapshots), static_cast<long long>(preemptions_));
    EXPECT_GT(hits_, 50);
    EXPECT_GT(u.evicted_blocks, 20);
    EXPECT_GT(u.evicted_snapshots, 5);
  }

 private:
  KvGeometry g_;
  KvCacheManager m_;
  std::mt19937 rng_;
  std::vector<std::vector<int32_t>> docs_;
  std::map<KvSeqId, Live> live_;
  std::vector<std::vector<int32_t>> waiting_;  // preempted sequences' tokens, to be recomputed
  KvSeqId next_id_ = 1;
  int64_t hits_ = 0, hit_tokens_ = 0, queried_tokens_ = 0, preemptions_ = 0;

  // A new sequence (a document prefix plus a random tail, or a preempted one coming back).
  void add() {
    std::vector<int32_t> tokens;
    if (!waiting_.empty() && rng_() % 2) {
      tokens = waiting_.back();
      waiting_.pop_back();
    } else {
      const auto& doc = docs_[rng_() % docs_.size()];
      tokens.assign(doc.begin(), doc.begin() + rng_() % doc.size());
      const std::vector<int32_t> tail = random_tokens(rng_, 1 + rng_() % 60, 6);
      tokens.insert(tokens.end(), tail.begin(), tail.end());
    }
    const int64_t cached = m_.find_cached_prefix(tokens);
    ASSERT_EQ(cached % kBlock, 0);
    ASSERT_LT(cached, static_cast<int64_t>(tokens.size()));
    const KvCacheUsage before = m_.usage();
    const KvSeqId id = next_id_++;
    const int64_t first = std::min<int64_t>(tokens.size(), cached + 1 + rng_() % 40);
    if (m_.add_sequence(id, tokens, cached, first) != KvStatus::kOk) {
      const KvCacheUsage after = m_.usage();
      ASSERT_EQ(after.used_blocks, before.used_blocks);
      ASSERT_EQ(after.cached_blocks, before.cached_blocks);
      ASSERT_EQ(after.snapshots, before.snapshots);
      return;
    }
    queried_tokens_ += tokens.size();
    hit_tokens_ += cached;
    hits_ += cached > 0;
    SequenceKv& kv = m_.sequence_kv(id);
    ASSERT_EQ(kv.num_tokens(), cached);
    ASSERT_EQ(verify(g_, kv, tokens), "") << "after a hit of " << cached;
    fake_forward(g_, kv, tokens, first);
    if (rng_() % 4) m_.publish(id, tokens);
    live_[id].tokens = std::move(tokens);
  }

  // A chunk of a random running sequence (often ending on a block boundary), or a decode token.
  void step() {
    if (live_.empty()) return;
    auto it = std::next(live_.begin(), rng_() % live_.size());
    Live& s = it->second;
    SequenceKv& kv = m_.sequence_kv(it->first);
    const int64_t n = kv.num_tokens();
    if (n == static_cast<int64_t>(s.tokens.size())) s.tokens.push_back(int32_t(rng_() % 6));  // decode
    int64_t end = std::min<int64_t>(s.tokens.size(), n + 1 + rng_() % 40);
    if (rng_() % 2 && end / kBlock > n / kBlock) end = end / kBlock * kBlock;
    if (m_.allocate(it->first, end) != KvStatus::kOk) {
      // Preempt by recompute: the sequence gives its blocks back and waits.
      ++preemptions_;
      s.tokens.resize(n);
      if (n > 0) waiting_.push_back(s.tokens);
      m_.free(it->first);
      live_.erase(it);
      return;
    }
    fake_forward(g_, kv, s.tokens, end);
    if (rng_() % 5) m_.publish(it->first, s.tokens);
  }

  void finish() {
    if (live_.empty()) return;
    auto it = std::next(live_.begin(), rng_() % live_.size());
    ASSERT_EQ(verify(g_, m_.sequence_kv(it->first), it->second.tokens), "");
    m_.free(it->first);
    live_.erase(it);
  }

  void verify_all() {
    for (auto& [id, s] : live_) ASSERT_EQ(verify(g_, m_.sequence_kv(id), s.tokens), "") << "sequence " << id;
  }
};

TEST(KvPoolProperty, RandomOperationsKeepThePoolConsistent) {
  for (uint32_t seed : {11u, 12u, 13u}) {
    SCOPED_TRACE(seed);
    PropertyRun run(seed, 40, 6, 6);
    run.run(6000);
    if (HasFatalFailure()) return;
    run.drain_and_check_fully_free();
  }
}

}  // namespace
}  // namespace ds4
