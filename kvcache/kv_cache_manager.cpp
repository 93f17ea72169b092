// KvCacheManager (kv_cache_manager.h): sequences, block tables, prefix-cache hits and publishing,
// boundary snapshots, and the SequenceKv view the forward pass reads and writes. Misuse (unknown
// sequence, a row outside the reserved blocks, cached_tokens not from find_cached_prefix) is a
// programmer error and aborts with file:line; running out of room is a KvStatus.
#include "kvcache/kv_cache_manager.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace ds4 {
namespace {

[[noreturn]] void manager_fail(const char* what, long long a, long long b = -1) {
  std::fprintf(stderr, "%s:%d: KvCacheManager: %s (%lld, %lld)\n", __FILE__, __LINE__, what, a, b);
  std::abort();
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

struct KvCacheManager::Sequence {
  KvSeqId id = 0;
  int64_t slot = -1;
  std::vector<int32_t> table;  // logical block i -> block id
  int64_t num_tokens = 0;      // positions computed
  int64_t published_blocks = 0;                // leading blocks whose chain key is known (published or attached)
  uint64_t chain_key = BlockPool::kRootKey;    // key of block published_blocks - 1 (root when none)
  std::unique_ptr<View> view;
};

struct KvCacheManager::PrefixMatch {
  std::vector<int32_t> blocks;  // cached blocks of the chain, in order
  std::vector<uint64_t> keys;   // their chain keys
  int64_t resume_blocks = 0;    // leading blocks up to the deepest one with a boundary snapshot
};

// The forward pass's window onto one sequence. Counters and reserve() work on any storage; row
// pointers only where rows are f32 in host memory (a device backend addresses rows through
// block_table() and the layout instead).
class KvCacheManager::View final : public SequenceKv {
 public:
  View(KvCacheManager& m, Sequence& s)
      : m_(m), s_(s), host_rows_(m.storage_->host_accessible() && m.layout_.layout == KvLayout::kF32) {
    const KvPoolLayout& L = m.layout_;
    for (size_t p = 0; p < L.row_pools.size(); ++p) pool_base_.push_back(m.storage_->region(static_cast<int>(p)));
    slot_base_ = m.storage_->region(L.slot_region()) + s.slot * L.sizes.slot_bytes;
  }
  int64_t num_tokens() const override { return s_.num_tokens; }
  void set_num_tokens(int64_t n) override {
    const int64_t bt = m_.block_tokens();
    if (n < s_.published_blocks * bt || n > static_cast<int64_t>(s_.table.size()) * bt)
      manager_fail("set_num_tokens outside [published, reserved] positions", static_cast<long long>(s_.id), n);
    s_.num_tokens = n;
  }
  bool reserve(int64_t n_tokens) override { return m_.allocate(s_.id, n_tokens) == KvStatus::kOk; }
  float* raw_row(int layer, int64_t pos) override {
    if (pos < 0) manager_fail("negative raw position", layer, pos);
    const int64_t ring = m_.layout_.geometry.raw_ring_rows;
    return as_f32(slot_base_ + placement(layer).raw_offset + (pos % ring) * row_bytes());
  }
  float* comp_row(int layer, int64_t c) override {
    const KvLayerPlacement& pl = placement(layer);
    if (pl.comp_pool < 0) manager_fail("layer has no compressed rows", layer, c);
    return pool_row(pl.comp_pool, pl.comp_pool_layer, layer, c);
  }
  float* index_row(int layer, int64_t c) override {
    const KvLayerPlacement& pl = placement(layer);
    if (pl.index_pool < 0) manager_fail("layer has no indexer rows", layer, c);
    return pool_row(pl.index_pool, pl.index_pool_layer, layer, c);
  }
  float* frontier_kv(int layer, bool indexer) override { return frontier(layer, placement(layer).frontier_kv_offset[indexer]); }
  float* frontier_score(int layer, bool indexer) override {
    return frontier(layer, placement(layer).frontier_score_offset[indexer]);
  }
  const KvCacheManager& manager() const { return m_; }
  KvSeqId id() const { return s_.id; }

 private:
  KvCacheManager& m_;
  Sequence& s_;
  bool host_rows_;
  std::vector<std::byte*> pool_base_;
  std::byte* slot_base_ = nullptr;

  static float* as_f32(std::byte* p) { return reinterpret_cast<float*>(p); }
  int64_t row_bytes() const { return attention_row_bytes(m_.layout_.geometry, m_.layout_.layout); }
  const KvLayerPlacement& placement(int layer) const {
    if (!host_rows_) manager_fail("row pointers need host storage with f32 rows (use block_table() on a device)", layer);
    if (layer < 0 || layer >= static_cast<int>(m_.layout_.layers.size())) manager_fail("no such layer", layer);
    return m_.layout_.layers[layer];
  }
  float* frontier(int layer, int64_t offset) {
    if (offset < 0) manager_fail("layer has no such compressor", layer);
    return as_f32(slot_base_ + offset);
  }
  float* pool_row(int pool, int pool_layer, int layer, int64_t c) {
    const KvRowPool& p = m_.layout_.row_pools[pool];
    const int64_t block = c / p.rows_per_block;
    if (c < 0 || block >= static_cast<int64_t>(s_.table.size())) manager_fail("compressed row not reserved", layer, c);
    return as_f32(pool_base_[pool] + s_.table[block] * p.block_stride_bytes + pool_layer * p.layer_stride_bytes +
                  (c % p.rows_per_block) * p.row_bytes);
  }
};

KvCacheManager::KvCacheManager(const KvPoolLayout& layout) : KvCacheManager(layout, make_host_storage(layout)) {}

KvCacheManager::KvCacheManager(const KvPoolLayout& layout, std::unique_ptr<KvStorage> storage)
    : layout_(layout),
      storage_(std::move(storage)),
      blocks_(static_cast<int32_t>(layout.num_blocks), layout.geometry.block_tokens),
      snapshots_(layout.num_snapshots) {
  if (!storage_) throw std::invalid_argument("KvCacheManager: no storage");
  if (!geometry_problems(layout.geometry).empty() || layout.num_blocks < 1 || layout.layers.size() != layout.geometry.layers.size())
    throw std::invalid_argument("KvCacheManager: layout not made by layout_kv_pool/plan_kv_pool");
  for (int64_t s = layout.num_slots - 1; s >= 0; --s) free_slots_.push_back(s);
}

KvCacheManager::~KvCacheManager() = default;

KvCacheManager::Sequence& KvCacheManager::get(KvSeqId seq, const char* caller) const {
  const auto it = seqs_.find(seq);
  if (it == seqs_.end()) {
    std::fprintf(stderr, "%s:%d: KvCacheManager::%s: unknown sequence %llu\n", __FILE__, __LINE__, caller,
                 static_cast<unsigned long long>(seq));
    std::abort();
  }
  return *it->second;
}

KvCacheManager::PrefixMatch KvCacheManager::match_prefix(std::span<const int32_t> tokens, int64_t max_blocks) const {
  PrefixMatch m;
  const int64_t bt = block_tokens();
  uint64_t parent = BlockPool::kRootKey;
  for (int64_t b = 0; b < max_blocks; ++b) {
    uint64_t key = 0;
    const int32_t block = blocks_.lookup(parent, tokens.subspan(b * bt, bt), &key);
    if (block < 0) break;
    m.blocks.push_back(block);
    m.keys.push_back(key);
    if (blocks_.snapshot(block) >= 0) m.resume_blocks = b + 1;
    parent = key;
  }
  return m;
}

int64_t KvCacheManager::find_cached_prefix(std::span<const int32_t> tokens) const {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n <= 1) return 0;
  return match_prefix(tokens, (n - 1) / block_tokens()).resume_blocks * block_tokens();
}

bool KvCacheManager::grow_table(Sequence& s, int64_t num_tokens) {
  const int64_t needed = ceil_div(num_tokens, block_tokens()) - static_cast<int64_t>(s.table.size());
  if (needed <= 0) return true;
  if (needed > blocks_.num_available()) return false;
  for (int64_t i = 0; i < needed; ++i) {
    int64_t evicted_snapshot = -1;
    const int32_t b = blocks_.take(&evicted_snapshot);
    if (evicted_snapshot >= 0) snapshots_.release(evicted_snapshot);
    s.table.push_back(b);
  }
  return true;
}

KvStatus KvCacheManager::add_sequence(KvSeqId seq, std::span<const int32_t> tokens, int64_t cached_tokens, int64_t num_tokens) {
  if (seqs_.count(seq)) manager_fail("add_sequence: sequence exists already", static_cast<long long>(seq));
  const int64_t bt = block_tokens();
  if (cached_tokens < 0 || cached_tokens % bt != 0 || (cached_tokens > 0 && cached_tokens >= static_cast<int64_t>(tokens.size())))
    manager_fail("add_sequence: cached_tokens is not a block multiple below tokens.size()", cached_tokens,
                 static_cast<long long>(tokens.size()));
  num_tokens = std::max(num_tokens, cached_tokens);
  if (free_slots_.empty()) return KvStatus::kNoSpace;
  const int64_t cached_blocks = cached_tokens / bt;
  PrefixMatch m;
  if (cached_blocks > 0) {
    m = match_prefix(tokens, cached_blocks);
    if (m.resume_blocks != cached_blocks) manager_fail("add_sequence: cached_tokens is not what find_cached_prefix returned", cached_tokens);
  }
  // Attached blocks nobody references leave the LRU, so they are not available for the rest.
  int64_t attached_idle = 0;
  for (int64_t b = 0; b < cached_blocks; ++b) attached_idle += blocks_.refcount(m.blocks[b]) == 0;
  if (ceil_div(num_tokens, bt) - cached_blocks > blocks_.num_available() - attached_idle) return KvStatus::kNoSpace;

  auto s = std::make_unique<Sequence>();
  s->id = seq;
  s->slot = free_slots_.back();
  free_slots_.pop_back();
  for (int64_t b = 0; b < cached_blocks; ++b) {
    blocks_.ref(m.blocks[b]);
    s->table.push_back(m.blocks[b]);
  }
  if (cached_blocks > 0) {
    const int64_t snapshot = blocks_.snapshot(m.blocks[cached_blocks - 1]);
    restore_snapshot(*s, snapshot, cached_tokens);
    snapshots_.touch(snapshot);
    s->published_blocks = cached_blocks;
    s->chain_key = m.keys[cached_blocks - 1];
    s->num_tokens = cached_tokens;
  } else {
    init_slot(s->slot);
  }
  if (!grow_table(*s, num_tokens)) manager_fail("add_sequence: room check passed but growth failed", num_tokens);
  s->view = std::make_unique<View>(*this, *s);
  prefix_queried_tokens_ += static_cast<int64_t>(tokens.size());
  prefix_hit_tokens_ += cached_tokens;
  seqs_.emplace(seq, std::move(s));
  return KvStatus::kOk;
}

KvStatus KvCacheManager::allocate(KvSeqId seq, int64_t num_tokens) {
  return grow_table(get(seq, "allocate"), num_tokens) ? KvStatus::kOk : KvStatus::kNoSpace;
}

void KvCacheManager::publish(KvSeqId seq, std::span<const int32_t> tokens) {
  Sequence& s = get(seq, "publish");
  if (static_cast<int64_t>(tokens.size()) < s.num_tokens)
    manager_fail("publish: fewer token ids than computed positions", static_cast<long long>(tokens.size()), s.num_tokens);
  const int64_t bt = block_tokens(), full = s.num_tokens / bt;
  if (full <= s.published_blocks) return;
  uint64_t last_parent = s.chain_key;
  for (int64_t b = s.published_blocks; b < full; ++b) {
    const std::span<const int32_t> ids = tokens.subspan(b * bt, bt);
    // False when an equal block is cached already: ours stays private, the chain goes on.
    blocks_.insert(s.table[b], s.chain_key, ids);
    last_parent = s.chain_key;
    s.chain_key = BlockPool::chain_key(s.chain_key, ids);
  }
  s.published_blocks = full;
  if (s.num_tokens != full * bt || snapshots_.capacity() == 0) return;
  // The state now is the state at the end of the last block: make that block a resume point.
  uint64_t key = 0;
  const int32_t cached = blocks_.lookup(last_parent, tokens.subspan((full - 1) * bt, bt), &key);
  if (cached < 0) return;  // a 64-bit key collision kept it out of the cache
  if (blocks_.snapshot(cached) >= 0) {
    snapshots_.touch(blocks_.snapshot(cached));
    return;
  }
  int32_t previous_owner = -1;
  const int64_t snapshot = snapshots_.take(cached, &previous_owner);
  if (previous_owner >= 0) blocks_.set_snapshot(previous_owner, -1);
  capture_snapshot(s, snapshot);
  blocks_.set_snapshot(cached, snapshot);
}

void KvCacheManager::free(KvSeqId seq) {
  Sequence& s = get(seq, "free");
  // Tail blocks first: they reach the LRU earlier, so a chain is evicted from its end.
  for (auto it = s.table.rbegin(); it != s.table.rend(); ++it) blocks_.unref(*it);
  free_slots_.push_back(s.slot);
  seqs_.erase(seq);
}

SequenceKv& KvCacheManager::sequence_kv(KvSeqId seq) { return *get(seq, "sequence_kv").view; }

std::span<const int32_t> KvCacheManager::block_table(KvSeqId seq) const { return get(seq, "block_table").table; }
int64_t KvCacheManager::slot(KvSeqId seq) const { return get(seq, "slot").slot; }

std::optional<KvSeqId> KvCacheManager::id_of(const SequenceKv& kv) const {
  const auto* view = dynamic_cast<const View*>(&kv);
  if (!view || &view->manager() != this) return std::nullopt;
  return view->id();
}

void KvCacheManager::init_slot(int64_t slot) {
  const KvGeometry& g = layout_.geometry;
  const int region = layout_.slot_region();
  const int64_t base = slot * layout_.sizes.slot_bytes;
  const int64_t ring_bytes = g.raw_ring_rows * attention_row_bytes(g, layout_.layout);
  for (int il = 0; il < g.n_layers(); ++il) {
    const KvLayerPlacement& pl = layout_.layers[il];
    // Components start 64-byte aligned with padding after them, so rounding up to floats is safe.
    storage_->fill_f32(region, base + pl.raw_offset, (ring_bytes + 3) / 4, 0.0f);
    const int ratio = g.layers[il].ratio;
    for (int c = 0; c < 2; ++c) {
      if (pl.frontier_kv_offset[c] < 0) continue;
      const int64_t n = int64_t(frontier_rows(ratio)) * frontier_width(ratio, c == 0 ? g.head_dim : g.indexer_dim);
      storage_->fill_f32(region, base + pl.frontier_kv_offset[c], n, 0.0f);
      storage_->fill_f32(region, base + pl.frontier_score_offset[c], n, kEmptyScore);
    }
  }
}

namespace {

// Copies the raw rows of positions [first, end) between a ring (slot = pos % ring) and a
// position-ordered array whose row 0 is position `array_first`, in runs that do not wrap.
void copy_raw_rows(KvStorage& st, bool to_array, int array_region, int64_t array_offset, int64_t array_first, int ring_region,
                   int64_t ring_offset, int64_t ring, int64_t row, int64_t first, int64_t end) {
  for (int64_t p = first; p < end;) {
    const int64_t slot = p % ring, run = std::min(end - p, ring - slot);
    const int64_t a = array_offset + (p - array_first) * row, r = ring_offset + slot * row;
    if (to_array) st.copy(array_region, a, ring_region, r, run * row);
    else st.copy(ring_region, r, array_region, a, run * row);
    p += run;
  }
}

}  // namespace

void KvCacheManager::capture_snapshot(const Sequence& s, int64_t snapshot) {
  const KvGeometry& g = layout_.geometry;
  const int slot_region = layout_.slot_region(), snap_region = layout_.snapshot_region();
  const int64_t slot_base = s.slot * layout_.sizes.slot_bytes, snap_base = snapshot * layout_.sizes.snapshot_bytes;
  const int64_t row = attention_row_bytes(g, layout_.layout), end = s.num_tokens;
  for (int il = 0; il < g.n_layers(); ++il) {
    const KvLayerPlacement& pl = layout_.layers[il];
    copy_raw_rows(*storage_, true, snap_region, snap_base + pl.snapshot_raw_offset, end - g.window, slot_region,
                  slot_base + pl.raw_offset, g.raw_ring_rows, row, std::max<int64_t>(0, end - g.window), end);
    const int ratio = g.layers[il].ratio;
    for (int c = 0; c < 2; ++c) {
      if (pl.snapshot_carry_kv_offset[c] < 0) continue;
      const int64_t bytes = int64_t(frontier_carry_rows(ratio)) * frontier_width(ratio, c == 0 ? g.head_dim : g.indexer_dim) * 4;
      storage_->copy(snap_region, snap_base + pl.snapshot_carry_kv_offset[c], slot_region, slot_base + pl.frontier_kv_offset[c], bytes);
      storage_->copy(snap_region, snap_base + pl.snapshot_carry_score_offset[c], slot_region,
                     slot_base + pl.frontier_score_offset[c], bytes);
    }
  }
}

void KvCacheManager::restore_snapshot(const Sequence& s, int64_t snapshot, int64_t boundary) {
  init_slot(s.slot);
  const KvGeometry& g = layout_.geometry;
  const int slot_region = layout_.slot_region(), snap_region = layout_.snapshot_region();
  const int64_t slot_base = s.slot * layout_.sizes.slot_bytes, snap_base = snapshot * layout_.sizes.snapshot_bytes;
  const int64_t row = attention_row_bytes(g, layout_.layout);
  for (int il = 0; il < g.n_layers(); ++il) {
    const KvLayerPlacement& pl = layout_.layers[il];
    copy_raw_rows(*storage_, false, snap_region, snap_base + pl.snapshot_raw_offset, boundary - g.window, slot_region,
                  slot_base + pl.raw_offset, g.raw_ring_rows, row, std::max<int64_t>(0, boundary - g.window), boundary);
    const int ratio = g.layers[il].ratio;
    for (int c = 0; c < 2; ++c) {
      if (pl.snapshot_carry_kv_offset[c] < 0) continue;
      const int64_t bytes = int64_t(frontier_carry_rows(ratio)) * frontier_width(ratio, c == 0 ? g.head_dim : g.indexer_dim) * 4;
      // At a boundary the current-window rows equal the previous-window rows (the emission copied
      // them), so both halves of the frontier get the carried rows.
      for (int64_t half : {int64_t(0), bytes}) {
        storage_->copy(slot_region, slot_base + pl.frontier_kv_offset[c] + half, snap_region, snap_base + pl.snapshot_carry_kv_offset[c],
                       bytes);
        storage_->copy(slot_region, slot_base + pl.frontier_score_offset[c] + half, snap_region,
                       snap_base + pl.snapshot_carry_score_offset[c], bytes);
      }
    }
  }
}

KvCacheUsage KvCacheManager::usage() const {
  KvCacheUsage u;
  u.block_tokens = block_tokens();
  u.total_blocks = blocks_.num_blocks();
  u.used_blocks = blocks_.num_referenced();
  u.cached_blocks = blocks_.num_evictable();
  u.free_blocks = blocks_.num_free();
  u.sequences = static_cast<int64_t>(seqs_.size());
  u.max_sequences = layout_.num_slots;
  u.snapshots = snapshots_.in_use();
  u.max_snapshots = snapshots_.capacity();
  u.prefix_queried_tokens = prefix_queried_tokens_;
  u.prefix_hit_tokens = prefix_hit_tokens_;
  u.evicted_blocks = blocks_.evictions();
  u.evicted_snapshots = snapshots_.evictions();
  return u;
}

std::string KvCacheManager::check_invariants() const {
  if (std::string p = blocks_.check(); !p.empty()) return p;
  std::vector<int32_t> refs(blocks_.num_blocks(), 0);
  std::vector<uint8_t> slot_used(layout_.num_slots, 0);
  for (int64_t s : free_slots_) slot_used.at(s) += 1;
  for (const auto& [id, s] : seqs_) {
    for (int32_t b : s->table) ++refs.at(b);
    if (++slot_used.at(s->slot) != 1) return "slot " + std::to_string(s->slot) + " held twice";
    if (static_cast<int64_t>(s->table.size()) * block_tokens() < s->num_tokens) return "sequence with positions past its blocks";
    for (int64_t b = 0; b < s->published_blocks; ++b)
      if (s->table[b] < 0) return "bad block id in a table";
  }
  for (int64_t s = 0; s < layout_.num_slots; ++s)
    if (slot_used[s] != 1) return "slot " + std::to_string(s) + " neither free nor held once";
  for (int32_t b = 0; b < blocks_.num_blocks(); ++b)
    if (refs[b] != blocks_.refcount(b))
      return "block " + std::to_string(b) + ": refcount " + std::to_string(blocks_.refcount(b)) + ", referenced by " +
             std::to_string(refs[b]) + " tables";
  int64_t owned = 0;
  for (int64_t s = 0; s < snapshots_.capacity(); ++s) {
    const int32_t owner = snapshots_.owner(s);
    if (owner < 0) continue;
    ++owned;
    if (blocks_.snapshot(owner) != s) return "snapshot " + std::to_string(s) + " and its owner block disagree";
  }
  if (owned != snapshots_.in_use()) return "snapshot count differs from owned snapshots";
  for (int32_t b = 0; b < blocks_.num_blocks(); ++b)
    if (blocks_.snapshot(b) >= 0 && snapshots_.owner(blocks_.snapshot(b)) != b) return "block points to a snapshot it does not own";
  return {};
}

}  // namespace ds4
