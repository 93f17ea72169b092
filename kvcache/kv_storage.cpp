// Pool layout planning (row pools, slot and snapshot placement, budget split) and the host
// KvStorage (kv_storage.h). Every component of a slot or snapshot starts 64-byte aligned so a
// device copy of the same layout can use vector loads; a pool's per-layer stride is 16-byte aligned.
#include "kvcache/kv_storage.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "kvcache/sequence_kv.h"

namespace ds4 {
namespace {

int64_t align_up(int64_t n, int64_t a) { return (n + a - 1) / a * a; }

// Appends a component of `bytes` to a running 64-byte aligned offset; returns its offset.
int64_t place(int64_t& cursor, int64_t bytes) {
  const int64_t at = cursor;
  cursor = align_up(cursor + bytes, 64);
  return at;
}

int find_pool(const std::vector<KvRowPool>& pools, bool indexer, int ratio) {
  for (size_t i = 0; i < pools.size(); ++i)
    if (pools[i].indexer == indexer && pools[i].ratio == ratio) return static_cast<int>(i);
  return -1;
}

// Groups the layers' compressed rows by (kind, ratio): attention pools first, then indexer pools.
void build_row_pools(KvPoolLayout& L) {
  const KvGeometry& g = L.geometry;
  for (bool indexer : {false, true}) {
    for (int il = 0; il < g.n_layers(); ++il) {
      const KvLayerGeometry& lg = g.layers[il];
      if (lg.ratio == 0 || (indexer && !lg.indexer)) continue;
      int p = find_pool(L.row_pools, indexer, lg.ratio);
      if (p < 0) {
        KvRowPool pool;
        pool.indexer = indexer;
        pool.ratio = lg.ratio;
        pool.rows_per_block = g.block_tokens / lg.ratio;
        pool.row_bytes = indexer ? indexer_row_bytes(g, L.layout) : attention_row_bytes(g, L.layout);
        pool.layer_stride_bytes = align_up(pool.rows_per_block * pool.row_bytes, 16);
        L.row_pools.push_back(pool);
        p = static_cast<int>(L.row_pools.size()) - 1;
      }
      KvRowPool& pool = L.row_pools[p];
      KvLayerPlacement& pl = L.layers[il];
      (indexer ? pl.index_pool : pl.comp_pool) = p;
      (indexer ? pl.index_pool_layer : pl.comp_pool_layer) = static_cast<int>(pool.layers.size());
      pool.layers.push_back(il);
      pool.block_stride_bytes = pool.layer_stride_bytes * static_cast<int64_t>(pool.layers.size());
    }
  }
}

// Offsets of every layer's raw ring and frontiers in a slot, and of its snapshot parts.
void place_fixed_state(KvPoolLayout& L) {
  const KvGeometry& g = L.geometry;
  const int64_t raw_row = attention_row_bytes(g, L.layout);
  int64_t slot = 0, snap = 0;
  for (int il = 0; il < g.n_layers(); ++il) {
    KvLayerPlacement& pl = L.layers[il];
    pl.raw_offset = place(slot, g.raw_ring_rows * raw_row);
    pl.snapshot_raw_offset = place(snap, int64_t(g.window) * raw_row);
    const int ratio = g.layers[il].ratio;
    if (ratio == 0) continue;
    for (int c = 0; c < (g.layers[il].indexer ? 2 : 1); ++c) {
      const int64_t width = frontier_width(ratio, c == 0 ? g.head_dim : g.indexer_dim);
      const int64_t frontier_bytes = frontier_rows(ratio) * width * 4;
      pl.frontier_kv_offset[c] = place(slot, frontier_bytes);
      pl.frontier_score_offset[c] = place(slot, frontier_bytes);
      const int64_t carry_bytes = frontier_carry_rows(ratio) * width * 4;
      if (carry_bytes == 0) continue;
      pl.snapshot_carry_kv_offset[c] = place(snap, carry_bytes);
      pl.snapshot_carry_score_offset[c] = place(snap, carry_bytes);
    }
  }
  L.sizes.slot_bytes = slot;
  L.sizes.snapshot_bytes = snap;
}

[[noreturn]] void storage_fail(const char* what, int region, int64_t offset, int64_t bytes) {
  std::fprintf(stderr, "%s:%d: HostKvStorage: %s (region %d, offset %lld, bytes %lld)\n", __FILE__, __LINE__, what, region,
               static_cast<long long>(offset), static_cast<long long>(bytes));
  std::abort();
}

class HostKvStorage final : public KvStorage {
 public:
  explicit HostKvStorage(const KvPoolLayout& layout) {
    for (int r = 0; r < layout.num_regions(); ++r) {
      const int64_t bytes = layout.region_bytes(r);
      const size_t alloc = static_cast<size_t>(align_up(std::max<int64_t>(bytes, 64), 64));
      void* p = std::aligned_alloc(64, alloc);
      if (!p) throw std::bad_alloc();
      std::memset(p, 0, alloc);
      regions_.push_back({static_cast<std::byte*>(p), bytes});
    }
  }
  ~HostKvStorage() override {
    for (const Region& r : regions_) std::free(r.data);
  }
  std::byte* region(int r) override { return at(r, 0, 0); }
  bool host_accessible() const override { return true; }
  void copy(int dst_region, int64_t dst_offset, int src_region, int64_t src_offset, int64_t bytes) override {
    std::memmove(at(dst_region, dst_offset, bytes), at(src_region, src_offset, bytes), static_cast<size_t>(bytes));
  }
  void fill_f32(int region, int64_t offset, int64_t count, float value) override {
    float* p = reinterpret_cast<float*>(at(region, offset, count * 4));
    for (int64_t i = 0; i < count; ++i) p[i] = value;
  }

 private:
  struct Region {
    std::byte* data;
    int64_t bytes;
  };
  std::vector<Region> regions_;

  std::byte* at(int r, int64_t offset, int64_t bytes) {
    if (r < 0 || r >= static_cast<int>(regions_.size())) storage_fail("no such region", r, offset, bytes);
    if (offset < 0 || bytes < 0 || offset + bytes > regions_[r].bytes) storage_fail("access out of bounds", r, offset, bytes);
    return regions_[r].data + offset;
  }
};

std::string join(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) s += (s.empty() ? "" : "; ") + l;
  return s;
}

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f GiB", double(bytes) / 1073741824.0);
  return buf;
}

}  // namespace

int64_t KvPoolLayout::region_bytes(int region) const {
  if (region >= 0 && region < static_cast<int>(row_pools.size())) return num_blocks * row_pools[region].block_stride_bytes;
  if (region == slot_region()) return num_slots * sizes.slot_bytes;
  if (region == snapshot_region()) return num_snapshots * sizes.snapshot_bytes;
  return 0;
}

int64_t KvPoolLayout::total_bytes() const {
  int64_t t = 0;
  for (int r = 0; r < num_regions(); ++r) t += region_bytes(r);
  return t;
}

KvPoolLayout layout_kv_pool(const KvGeometry& geometry, KvLayout layout, int64_t num_blocks, int64_t num_slots,
                            int64_t num_snapshots) {
  const std::vector<std::string> problems = geometry_problems(geometry);
  if (!problems.empty()) throw std::invalid_argument("KV geometry: " + join(problems));
  if (num_blocks < 1 || num_blocks > INT32_MAX) throw std::invalid_argument("KV pool: block count must be in [1, 2^31)");
  if (num_slots < 0 || num_snapshots < 0) throw std::invalid_argument("KV pool: negative slot or snapshot count");
  KvPoolLayout L;
  L.geometry = geometry;
  L.layout = layout;
  L.layers.resize(geometry.n_layers());
  L.num_blocks = num_blocks;
  L.num_slots = num_slots;
  L.num_snapshots = num_snapshots;
  build_row_pools(L);
  place_fixed_state(L);
  L.sizes.block_tokens = geometry.block_tokens;
  for (const KvRowPool& p : L.row_pools) L.sizes.block_bytes += p.block_stride_bytes;
  if (L.sizes.block_bytes == 0) throw std::invalid_argument("KV pool: no compressed layer, nothing to page");
  return L;
}

KvPoolLayout plan_kv_pool(const KvGeometry& geometry, const KvPoolOptions& o) {
  if (o.budget_bytes <= 0) throw std::invalid_argument("KV pool: the memory budget must be positive");
  if (o.max_sequences < 1) throw std::invalid_argument("KV pool: max_sequences must be at least 1");
  if (!(o.snapshot_fraction >= 0.0 && o.snapshot_fraction < 1.0))
    throw std::invalid_argument("KV pool: snapshot_fraction must be in [0, 1)");
  const KvByteSizes s = kv_byte_sizes(geometry, o.layout);
  const int64_t slot_total = o.max_sequences * s.slot_bytes;
  const int64_t snapshots = static_cast<int64_t>(o.snapshot_fraction * double(o.budget_bytes)) / s.snapshot_bytes;
  const int64_t left = o.budget_bytes - slot_total - snapshots * s.snapshot_bytes;
  const int64_t blocks = left > 0 ? std::min<int64_t>(left / s.block_bytes, INT32_MAX) : 0;
  if (blocks < 1)
    throw std::invalid_argument("KV pool: budget " + gib(o.budget_bytes) + " too small: " + std::to_string(o.max_sequences) +
                                " sequence slots take " + gib(slot_total) + ", snapshots " + gib(snapshots * s.snapshot_bytes) +
                                ", and one block needs " + std::to_string(s.block_bytes) + " B");
  return layout_kv_pool(geometry, o.layout, blocks, o.max_sequences, snapshots);
}

std::unique_ptr<KvStorage> make_host_storage(const KvPoolLayout& layout) { return std::make_unique<HostKvStorage>(layout); }

}  // namespace ds4
