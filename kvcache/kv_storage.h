// KvPoolLayout: where every byte of the pool lives (regions, base offsets and strides), planned
// from a memory budget; KvStorage: the memory behind it (host now, a CUDA twin later) as base
// pointers per region plus copy/fill, so device kernels can address rows through the same block
// tables. Owned by KvCacheManager; backends read the layout to address rows.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kvcache/kv_geometry.h"

namespace ds4 {

// One physical pool: the rows of one kind of every layer with the same ratio, block-major:
// row r of pool-layer i in block b is at b * block_stride + i * layer_stride + r * row_bytes.
struct KvRowPool {
  bool indexer = false;  // indexer rows (else compressed attention rows)
  int ratio = 0;
  int rows_per_block = 0;  // block_tokens / ratio
  int64_t row_bytes = 0;
  std::vector<int> layers;  // model layers stored here, in order (pool-layer i = layers[i])
  int64_t layer_stride_bytes = 0;
  int64_t block_stride_bytes = 0;
};

// Where one layer's state is. Offsets in bytes; -1 where the layer has no such state.
struct KvLayerPlacement {
  int comp_pool = -1, comp_pool_layer = -1;    // compressed attention rows
  int index_pool = -1, index_pool_layer = -1;  // indexer rows
  // Within a sequence slot: raw ring [raw_ring_rows, head_dim] (layout rows), then f32 frontiers
  // [frontier_rows, frontier_width] kv and score for the attention ([0]) and indexer ([1]) compressor.
  int64_t raw_offset = -1;
  int64_t frontier_kv_offset[2] = {-1, -1};
  int64_t frontier_score_offset[2] = {-1, -1};
  // Within a boundary snapshot: the raw rows of the last `window` positions in position order, then
  // [frontier_carry_rows, frontier_width] f32 kv and score per compressor.
  int64_t snapshot_raw_offset = -1;
  int64_t snapshot_carry_kv_offset[2] = {-1, -1};
  int64_t snapshot_carry_score_offset[2] = {-1, -1};
};

struct KvPoolLayout {
  KvGeometry geometry;
  KvLayout layout = KvLayout::kF32;
  KvByteSizes sizes;
  std::vector<KvRowPool> row_pools;
  std::vector<KvLayerPlacement> layers;  // [n_layers]
  int64_t num_blocks = 0;
  int64_t num_slots = 0;      // running sequences
  int64_t num_snapshots = 0;  // boundary snapshots kept with cached blocks

  // Regions: the row pools (0 .. row_pools.size()-1), then the slots, then the snapshots.
  int num_regions() const { return static_cast<int>(row_pools.size()) + 2; }
  int slot_region() const { return static_cast<int>(row_pools.size()); }
  int snapshot_region() const { return static_cast<int>(row_pools.size()) + 1; }
  int64_t region_bytes(int region) const;
  int64_t total_bytes() const;
  int64_t capacity_tokens() const { return num_blocks * geometry.block_tokens; }
};

// Exact layout with the given counts. Throws std::invalid_argument naming the problem (bad
// geometry, non-positive block count, negative counts).
KvPoolLayout layout_kv_pool(const KvGeometry& geometry, KvLayout layout, int64_t num_blocks, int64_t num_slots,
                            int64_t num_snapshots);

struct KvPoolOptions {
  KvLayout layout = KvLayout::kF32;
  int64_t budget_bytes = 0;         // everything: blocks, sequence slots and snapshots
  int64_t max_sequences = 64;       // running sequences (one slot each)
  double snapshot_fraction = 0.05;  // share of the budget for boundary snapshots (prefix-cache resume points)
};

// Splits a budget: max_sequences slots, snapshot_fraction of the budget in snapshots, the rest in
// blocks. Throws std::invalid_argument naming the problem (budget too small for one block, ...).
KvPoolLayout plan_kv_pool(const KvGeometry& geometry, const KvPoolOptions& options);

// The memory of a pool. Single-threaded (the engine thread).
class KvStorage {
 public:
  virtual ~KvStorage() = default;
  // Base address of a region, in the storage's address space (host or device).
  virtual std::byte* region(int region) = 0;
  // True when region() pointers may be dereferenced on the host (the CPU backend needs it).
  virtual bool host_accessible() const = 0;
  virtual void copy(int dst_region, int64_t dst_offset, int src_region, int64_t src_offset, int64_t bytes) = 0;
  virtual void fill_f32(int region, int64_t offset, int64_t count, float value) = 0;
};

// Host memory for every region of the layout (64-byte aligned, zeroed). Throws std::bad_alloc.
std::unique_ptr<KvStorage> make_host_storage(const KvPoolLayout& layout);

}  // namespace ds4
