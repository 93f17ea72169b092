// KV pool sizes for the real DeepSeek V4 Flash config: bytes per context token per layout against
// MODEL.md 2.5 (13,760 B f32, 6,880 B f16, ~3.5 KB packed), slot and snapshot sizes, the budget
// split, the capacity in 55 GiB (printed), and the --kv-memory parser.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "engine/kv_geometry.h"
#include "kvcache/kv_storage.h"
#include "kvcache/sequence_kv.h"

namespace ds4 {
namespace {

constexpr int64_t kGiB = 1073741824;

TEST(KvGeometry, FlashGeometryFromConfig) {
  const KvGeometry g = kv_geometry(preset_flash());
  EXPECT_TRUE(geometry_problems(g).empty());
  ASSERT_EQ(g.n_layers(), 43);
  int csa = 0, hca = 0;
  for (const KvLayerGeometry& l : g.layers) {
    csa += l.ratio == 4 && l.indexer;
    hca += l.ratio == 128 && !l.indexer;
  }
  EXPECT_EQ(csa, 21);
  EXPECT_EQ(hca, 20);
  EXPECT_EQ(g.window, 128);
  EXPECT_EQ(g.block_tokens, 256);
}

TEST(KvGeometry, BytesPerTokenPerLayout) {
  const KvGeometry g = kv_geometry(preset_flash());
  // MODEL.md 2.5: 21 * (512 + 128) / 4 + 20 * 512 / 128 = 3440 values per token.
  EXPECT_EQ(kv_byte_sizes(g, KvLayout::kF32).bytes_per_token(), 13760.0);
  EXPECT_EQ(kv_byte_sizes(g, KvLayout::kF16).bytes_per_token(), 6880.0);
  // Packed rows: 448 FP8 + 7 exponents + 64 x f16 = 583 B; indexer 64 B FP4 + 4 exponents = 68 B.
  EXPECT_EQ(attention_row_bytes(g, KvLayout::kPacked), 583);
  EXPECT_EQ(indexer_row_bytes(g, KvLayout::kPacked), 68);
  const double packed = kv_byte_sizes(g, KvLayout::kPacked).bytes_per_token();
  // Unpadded 21 * (583 + 68) / 4 + 20 * 583 / 128 = 3508.8; the ratio-128 layer stride is padded to 16 B.
  EXPECT_NEAR(packed, 3508.8, 1.0);
  for (KvLayout l : {KvLayout::kF32, KvLayout::kF16, KvLayout::kPacked})
    std::printf("layout %-6s: %8.1f B per context token, block %lld B\n", layout_name(l), kv_byte_sizes(g, l).bytes_per_token(),
                static_cast<long long>(kv_byte_sizes(g, l).block_bytes));
}

TEST(KvGeometry, SlotAndSnapshotSizes) {
  const KvGeometry g = kv_geometry(preset_flash());
  const KvByteSizes s = kv_byte_sizes(g, KvLayout::kF32);
  const int64_t raw = 43LL * 128 * 512 * 4;
  // Frontiers (MODEL.md 2.5, ~11.6 MiB): ratio 4: 8 x 1024 and 8 x 256, ratio 128: 128 x 512; kv + score, f32.
  const int64_t frontiers = 21LL * (8 * 1024 + 8 * 256) * 2 * 4 + 20LL * 128 * 512 * 2 * 4;
  EXPECT_EQ(s.slot_bytes, raw + frontiers);
  // A snapshot carries the raw window and the previous-window half (rows 0..3) of ratio-4 frontiers.
  EXPECT_EQ(s.snapshot_bytes, raw + 21LL * (4 * 1024 + 4 * 256) * 2 * 4);
  std::printf("per running sequence %.2f MiB (raw window %.2f, frontiers %.2f); per boundary snapshot %.2f MiB\n",
              s.slot_bytes / 1048576.0, raw / 1048576.0, frontiers / 1048576.0, s.snapshot_bytes / 1048576.0);
}

TEST(KvGeometry, CapacityOfTheRealModelIn55GiB) {
  const KvGeometry g = kv_geometry(preset_flash());
  for (KvLayout layout : {KvLayout::kF32, KvLayout::kF16, KvLayout::kPacked}) {
    for (int64_t seqs : {1, 64, 256}) {
      KvPoolOptions o;
      o.layout = layout;
      o.budget_bytes = 55 * kGiB;
      o.max_sequences = seqs;
      o.snapshot_fraction = 0.05;
      const KvPoolLayout L = plan_kv_pool(g, o);
      const KvByteSizes& s = L.sizes;
      EXPECT_LE(L.total_bytes(), o.budget_bytes);
      // Nothing big left over: less than one block.
      EXPECT_LT(o.budget_bytes - L.total_bytes(), s.block_bytes + s.snapshot_bytes);
      EXPECT_EQ(L.num_slots, seqs);
      EXPECT_EQ(L.num_snapshots, static_cast<int64_t>(0.05 * o.budget_bytes) / s.snapshot_bytes);
      EXPECT_EQ(L.capacity_tokens(), L.num_blocks * 256);
      std::printf("55 GiB %-6s %3lld seqs: %6lld blocks = %9lld context tokens, %4lld snapshots, %5.2f GiB in slots\n",
                  layout_name(layout), static_cast<long long>(seqs), static_cast<long long>(L.num_blocks),
                  static_cast<long long>(L.capacity_tokens()), static_cast<long long>(L.num_snapshots),
                  double(L.region_bytes(L.slot_region())) / kGiB);
    }
  }
  // Blocks only (1 sequence, no snapshots): 55 GiB / 13,760 B per token.
  KvPoolOptions o;
  o.budget_bytes = 55 * kGiB;
  o.max_sequences = 1;
  o.snapshot_fraction = 0.0;
  const KvPoolLayout L = plan_kv_pool(g, o);
  EXPECT_EQ(L.num_blocks, (55 * kGiB - L.sizes.slot_bytes) / L.sizes.block_bytes);
  EXPECT_GT(L.capacity_tokens(), 4'290'000);
}

TEST(KvGeometry, PoolLayoutAddressesAreDisjoint) {
  const KvGeometry g = kv_geometry(preset_flash());
  const KvPoolLayout L = layout_kv_pool(g, KvLayout::kF32, 3, 2, 1);
  ASSERT_EQ(L.row_pools.size(), 3u);  // ratio-4 rows, ratio-128 rows, indexer rows
  EXPECT_EQ(L.row_pools[0].layers.size(), 21u);
  EXPECT_EQ(L.row_pools[0].rows_per_block, 64);
  EXPECT_EQ(L.row_pools[1].rows_per_block, 2);
  EXPECT_TRUE(L.row_pools[2].indexer);
  // Slot components do not overlap and fit in the slot.
  std::vector<std::pair<int64_t, int64_t>> parts;
  for (int il = 0; il < g.n_layers(); ++il) {
    const KvLayerPlacement& pl = L.layers[il];
    parts.push_back({pl.raw_offset, int64_t(g.raw_ring_rows) * 2048});
    for (int c = 0; c < 2; ++c) {
      if (pl.frontier_kv_offset[c] < 0) continue;
      const int ratio = g.layers[il].ratio;
      const int64_t bytes = int64_t(frontier_rows(ratio)) * frontier_width(ratio, c ? 128 : 512) * 4;
      parts.push_back({pl.frontier_kv_offset[c], bytes});
      parts.push_back({pl.frontier_score_offset[c], bytes});
    }
  }
  std::sort(parts.begin(), parts.end());
  for (size_t i = 0; i + 1 < parts.size(); ++i) EXPECT_LE(parts[i].first + parts[i].second, parts[i + 1].first);
  EXPECT_LE(parts.back().first + parts.back().second, L.sizes.slot_bytes);
  for (const auto& p : parts) EXPECT_EQ(p.first % 64, 0);
}

TEST(KvGeometry, BadGeometryAndBudgetAreNamed) {
  KvGeometry g = kv_geometry(preset_flash());
  g.layers[3].ratio = 96;  // does not divide 256
  const std::vector<std::string> p = geometry_problems(g);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].find("layer 3"), std::string::npos);
  EXPECT_THROW(layout_kv_pool(g, KvLayout::kF32, 1, 1, 0), std::invalid_argument);
  KvPoolOptions o;
  o.budget_bytes = 100 * 1048576;  // 100 MiB cannot hold 64 slots of 22 MiB
  try {
    plan_kv_pool(kv_geometry(preset_flash()), o);
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("too small"), std::string::npos) << e.what();
  }
}

TEST(KvGeometry, ParseKvMemory) {
  KvMemory m;
  std::string err;
  ASSERT_TRUE(parse_kv_memory("55", m, err));
  EXPECT_EQ(m.bytes, 55 * kGiB);
  ASSERT_TRUE(parse_kv_memory("55GiB", m, err));
  EXPECT_EQ(m.bytes, 55 * kGiB);
  ASSERT_TRUE(parse_kv_memory("1.5 G", m, err));
  EXPECT_EQ(m.bytes, 3 * kGiB / 2);
  ASSERT_TRUE(parse_kv_memory("512MiB", m, err));
  EXPECT_EQ(m.bytes, 512LL * 1048576);
  ASSERT_TRUE(parse_kv_memory("0.9", m, err));
  EXPECT_EQ(m.bytes, 0);
  EXPECT_DOUBLE_EQ(m.fraction, 0.9);
  EXPECT_EQ(m.resolve(100), 90);
  ASSERT_TRUE(parse_kv_memory("80%", m, err));
  EXPECT_DOUBLE_EQ(m.fraction, 0.8);
  for (const char* bad : {"", "-3", "0", "abc", "12TB", "150%", "0%", "nan", "1e30"}) {
    EXPECT_FALSE(parse_kv_memory(bad, m, err)) << bad;
    EXPECT_NE(err.find("--kv-memory"), std::string::npos) << err;
  }
  KvLayout layout;
  EXPECT_TRUE(parse_layout("f16", layout));
  EXPECT_EQ(layout, KvLayout::kF16);
  EXPECT_FALSE(parse_layout("bf16", layout));
}

}  // namespace
}  // namespace ds4
