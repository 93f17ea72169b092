// Block and snapshot id bookkeeping (block_pool.h): refcounts, free list, LRU, prefix-cache index.
// Misuse (unref of a free block, ref of an uncached unreferenced block, ...) is a programmer error
// and aborts with the block id, so a double free can never corrupt the lists silently.
#include "kvcache/block_pool.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace ds4 {
namespace {

[[noreturn]] void pool_fail(const char* what, int64_t id) {
  std::fprintf(stderr, "%s:%d: BlockPool: %s (id %lld)\n", __FILE__, __LINE__, what, static_cast<long long>(id));
  std::abort();
}

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser: every input bit affects every output bit
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

}  // namespace

void IndexList::push_back(int64_t i) {
  if (in_.at(i)) pool_fail("index already listed", i);
  in_[i] = 1;
  prev_[i] = tail_;
  next_[i] = -1;
  if (tail_ >= 0) next_[tail_] = i;
  else head_ = i;
  tail_ = i;
  ++size_;
}

void IndexList::remove(int64_t i) {
  if (!in_.at(i)) pool_fail("index not listed", i);
  in_[i] = 0;
  if (prev_[i] >= 0) next_[prev_[i]] = next_[i];
  else head_ = next_[i];
  if (next_[i] >= 0) prev_[next_[i]] = prev_[i];
  else tail_ = prev_[i];
  prev_[i] = next_[i] = -1;
  --size_;
}

BlockPool::BlockPool(int32_t num_blocks, int block_tokens)
    : block_tokens_(block_tokens),
      refcount_(num_blocks, 0),
      cached_(num_blocks, 0),
      key_(num_blocks, 0),
      parent_key_(num_blocks, 0),
      tokens_(static_cast<size_t>(num_blocks) * block_tokens, 0),
      snapshot_(num_blocks, -1),
      lru_(num_blocks) {
  // Stack with block 0 on top, so blocks are handed out in id order (easier to read in tests).
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

uint64_t BlockPool::chain_key(uint64_t parent_key, std::span<const int32_t> tokens) {
  uint64_t h = mix64(parent_key ^ 0x9e3779b97f4a7c15ull);
  for (int32_t t : tokens) h = mix64(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(t)) + 0x632be59bd9b4e019ull));
  return mix64(h ^ tokens.size());
}

int32_t BlockPool::take(int64_t* evicted_snapshot) {
  *evicted_snapshot = -1;
  int32_t b = -1;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (lru_.size() > 0) {
    b = static_cast<int32_t>(lru_.front());
    lru_.remove(b);
    *evicted_snapshot = snapshot_[b];
    uncache(b);
    ++evictions_;
  } else {
    return -1;
  }
  refcount_[b] = 1;
  return b;
}

void BlockPool::ref(int32_t b) {
  if (refcount_.at(b) == 0) {
    if (!cached_[b]) pool_fail("ref of a free block", b);
    lru_.remove(b);
  }
  ++refcount_[b];
}

void BlockPool::unref(int32_t b) {
  if (refcount_.at(b) <= 0) pool_fail("unref of an unreferenced block (double free)", b);
  if (--refcount_[b] > 0) return;
  if (cached_[b]) lru_.push_back(b);
  else free_.push_back(b);
}

bool BlockPool::same_content(int32_t b, uint64_t parent_key, std::span<const int32_t> tokens) const {
  if (parent_key_[b] != parent_key || static_cast<int>(tokens.size()) != block_tokens_) return false;
  return std::equal(tokens.begin(), tokens.end(), tokens_.begin() + static_cast<size_t>(b) * block_tokens_);
}

int32_t BlockPool::lookup(uint64_t parent_key, std::span<const int32_t> tokens, uint64_t* key) const {
  *key = chain_key(parent_key, tokens);
  const auto it = index_.find(*key);
  if (it == index_.end() || !same_content(it->second, parent_key, tokens)) return -1;
  return it->second;
}

bool BlockPool::insert(int32_t b, uint64_t parent_key, std::span<const int32_t> tokens) {
  if (refcount_.at(b) <= 0 || cached_[b]) pool_fail("insert of an unreferenced or already cached block", b);
  if (static_cast<int>(tokens.size()) != block_tokens_) pool_fail("insert of a partial block", b);
  const uint64_t key = chain_key(parent_key, tokens);
  if (!index_.emplace(key, b).second) return false;  // same key cached already (or a 64-bit collision)
  cached_[b] = 1;
  key_[b] = key;
  parent_key_[b] = parent_key;
  std::copy(tokens.begin(), tokens.end(), tokens_.begin() + static_cast<size_t>(b) * block_tokens_);
  return true;
}

void BlockPool::set_snapshot(int32_t b, int64_t snapshot) {
  if (!cached_.at(b)) pool_fail("snapshot on an uncached block", b);
  snapshot_[b] = snapshot;
}

void BlockPool::uncache(int32_t b) {
  index_.erase(key_[b]);
  cached_[b] = 0;
  snapshot_[b] = -1;
}

std::string BlockPool::check() const {
  const int32_t n = num_blocks();
  std::vector<uint8_t> on_free(n, 0);
  for (int32_t b : free_) {
    if (b < 0 || b >= n || on_free[b]) return "free list holds block " + std::to_string(b) + " twice or out of range";
    on_free[b] = 1;
  }
  int64_t cached_count = 0, referenced = 0;
  for (int32_t b = 0; b < n; ++b) {
    referenced += refcount_[b] > 0;
    const std::string at = "block " + std::to_string(b) + ": ";
    if (refcount_[b] < 0) return at + "negative refcount";
    const bool free_state = refcount_[b] == 0 && !cached_[b];
    if (free_state != (on_free[b] != 0)) return at + "on the free list iff free violated";
    if ((refcount_[b] == 0 && cached_[b]) != lru_.contains(b)) return at + "in the LRU iff cached and unreferenced violated";
    if (!cached_[b] && snapshot_[b] >= 0) return at + "snapshot on an uncached block";
    if (cached_[b]) {
      ++cached_count;
      const auto it = index_.find(key_[b]);
      if (it == index_.end() || it->second != b) return at + "cached but not indexed under its key";
    }
  }
  if (cached_count != static_cast<int64_t>(index_.size())) return "index size differs from the cached block count";
  if (static_cast<int64_t>(free_.size()) + lru_.size() + referenced != n) return "lists do not partition the blocks";
  return {};
}

int64_t SnapshotPool::take(int32_t owner, int32_t* evicted_owner) {
  *evicted_owner = -1;
  int64_t s = -1;
  if (!free_.empty()) {
    s = free_.back();
    free_.pop_back();
  } else if (lru_.size() > 0) {
    s = lru_.front();
    lru_.remove(s);
    *evicted_owner = owner_[s];
    ++evictions_;
  } else {
    return -1;
  }
  owner_[s] = owner;
  lru_.push_back(s);
  return s;
}

void SnapshotPool::touch(int64_t s) {
  lru_.remove(s);
  lru_.push_back(s);
}

void SnapshotPool::release(int64_t s) {
  lru_.remove(s);
  owner_[s] = -1;
  free_.push_back(s);
}

}  // namespace ds4
