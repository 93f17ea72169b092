// BlockPool: bookkeeping of the pool's block ids (no storage): refcounts, the free list, the prefix
// cache index (chain key -> block, with the parent key and token ids kept to rule out hash
// collisions) and the LRU of unreferenced cached blocks, evicted only when no free block is left.
// SnapshotPool: the same for boundary-snapshot ids, each owned by one cached block. Invariant: every
// block is exactly one of free (refcount 0, uncached), cached-unreferenced (in the LRU) or
// referenced (refcount > 0). Used by KvCacheManager on the engine thread.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace ds4 {

// A doubly linked list over the indices [0, n) (each index in it at most once), oldest at the front.
class IndexList {
 public:
  explicit IndexList(int64_t n) : prev_(n, -1), next_(n, -1), in_(n, 0) {}
  bool contains(int64_t i) const { return in_[i] != 0; }
  int64_t front() const { return head_; }
  int64_t size() const { return size_; }
  void push_back(int64_t i);
  void remove(int64_t i);

 private:
  std::vector<int64_t> prev_, next_;
  std::vector<uint8_t> in_;
  int64_t head_ = -1, tail_ = -1, size_ = 0;
};

class BlockPool {
 public:
  static constexpr uint64_t kRootKey = 0x6b7663616368653aull;  // the parent key of block 0

  BlockPool(int32_t num_blocks, int block_tokens);

  int32_t num_blocks() const { return static_cast<int32_t>(refcount_.size()); }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_evictable() const { return static_cast<int32_t>(lru_.size()); }
  int32_t num_available() const { return num_free() + num_evictable(); }
  int32_t num_referenced() const { return num_blocks() - num_available(); }
  int64_t evictions() const { return evictions_; }

  // Takes an unreferenced block for new data (refcount 1, uncached): a free one, else the least
  // recently used cached one, which leaves the cache; its snapshot id (or -1) goes to
  // *evicted_snapshot. Returns -1 when every block is referenced.
  int32_t take(int64_t* evicted_snapshot);
  // One more reference to a cached block (it leaves the LRU when it was unreferenced).
  void ref(int32_t block);
  // One reference less; at zero a cached block goes to the LRU's most-recent end, another to the free list.
  void unref(int32_t block);
  int32_t refcount(int32_t block) const { return refcount_.at(block); }

  static uint64_t chain_key(uint64_t parent_key, std::span<const int32_t> tokens);
  // The cached block holding `tokens` after the chain ending in parent_key (-1 if none); its key to *key.
  int32_t lookup(uint64_t parent_key, std::span<const int32_t> tokens, uint64_t* key) const;
  // Publishes referenced, uncached `block` as the block after parent_key holding `tokens`. False
  // (nothing changes) when another block already caches that key.
  bool insert(int32_t block, uint64_t parent_key, std::span<const int32_t> tokens);
  bool is_cached(int32_t block) const { return cached_.at(block) != 0; }
  int64_t snapshot(int32_t block) const { return snapshot_.at(block); }
  void set_snapshot(int32_t block, int64_t snapshot);  // -1 detaches; the block must be cached

  // Empty when the lists, map and refcounts are consistent, else the first problem.
  std::string check() const;

 private:
  int block_tokens_;
  std::vector<int32_t> refcount_;
  std::vector<uint8_t> cached_;
  std::vector<uint64_t> key_, parent_key_;
  std::vector<int32_t> tokens_;    // [num_blocks, block_tokens]: ids of cached blocks
  std::vector<int64_t> snapshot_;  // boundary snapshot of a cached block, -1 if none
  std::vector<int32_t> free_;      // stack of free blocks
  IndexList lru_;                  // unreferenced cached blocks, least recently used first
  std::unordered_map<uint64_t, int32_t> index_;
  int64_t evictions_ = 0;

  bool same_content(int32_t block, uint64_t parent_key, std::span<const int32_t> tokens) const;
  void uncache(int32_t block);
};

class SnapshotPool {
 public:
  explicit SnapshotPool(int64_t num_snapshots) : owner_(num_snapshots, -1), lru_(num_snapshots) {
    for (int64_t s = num_snapshots - 1; s >= 0; --s) free_.push_back(s);
  }
  int64_t capacity() const { return static_cast<int64_t>(owner_.size()); }
  int64_t in_use() const { return lru_.size(); }
  int64_t evictions() const { return evictions_; }
  // A snapshot id for `owner`: a free one, else the least recently used one, whose previous owner
  // goes to *evicted_owner (else -1) so the caller detaches it. -1 when the pool has no snapshots.
  int64_t take(int32_t owner, int32_t* evicted_owner);
  void touch(int64_t snapshot);    // now the most recently used
  void release(int64_t snapshot);  // back to free
  int32_t owner(int64_t snapshot) const { return owner_.at(snapshot); }

 private:
  std::vector<int32_t> owner_;
  std::vector<int64_t> free_;
  IndexList lru_;
  int64_t evictions_ = 0;
};

}  // namespace ds4
