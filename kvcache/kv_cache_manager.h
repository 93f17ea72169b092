// KvCacheManager: the paged compressed-KV pool of all sequences: per-sequence block tables over
// blocks of block_tokens positions, per-sequence slots (raw window + compressor frontiers), the
// prefix cache (hash chain over full blocks, refcounts, LRU eviction on demand, boundary snapshots
// so a hit resumes exactly), usage accounting, and a SequenceKv view per sequence for the forward
// pass. Called by the scheduler on the engine thread only; no locks.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "kvcache/block_pool.h"
#include "kvcache/kv_storage.h"
#include "kvcache/sequence_kv.h"

namespace ds4 {

using KvSeqId = uint64_t;

enum class KvStatus { kOk, kNoSpace };

// Occupancy and prefix-cache counters (gauges and cumulative counts) for metrics.
struct KvCacheUsage {
  int64_t block_tokens = 0;
  int64_t total_blocks = 0;
  int64_t used_blocks = 0;    // referenced by at least one sequence
  int64_t cached_blocks = 0;  // unreferenced, holding a reusable prefix block (evictable)
  int64_t free_blocks = 0;    // unreferenced, empty
  int64_t sequences = 0, max_sequences = 0;
  int64_t snapshots = 0, max_snapshots = 0;
  int64_t prefix_queried_tokens = 0;  // cumulative: tokens offered to add_sequence
  int64_t prefix_hit_tokens = 0;      // cumulative: tokens served from the prefix cache
  int64_t evicted_blocks = 0;         // cumulative: cached blocks reclaimed for new data
  int64_t evicted_snapshots = 0;      // cumulative: snapshots dropped for newer ones
  double used_fraction() const { return total_blocks > 0 ? double(used_blocks) / double(total_blocks) : 0.0; }
};

class KvCacheManager {
 public:
  // Host storage (the CPU backend). Throws std::invalid_argument on a bad layout.
  explicit KvCacheManager(const KvPoolLayout& layout);
  // Any storage for this layout (a device storage for the CUDA backend).
  KvCacheManager(const KvPoolLayout& layout, std::unique_ptr<KvStorage> storage);
  ~KvCacheManager();
  KvCacheManager(const KvCacheManager&) = delete;
  KvCacheManager& operator=(const KvCacheManager&) = delete;

  int64_t block_tokens() const { return layout_.geometry.block_tokens; }
  // Most positions one sequence can hold (the whole pool).
  int64_t max_sequence_tokens() const { return layout_.capacity_tokens(); }

  // Leading tokens of `tokens` a new sequence can take from the prefix cache: a multiple of
  // block_tokens, less than tokens.size() (the last token is always computed, for its logits), and
  // ending at a block that has a boundary snapshot. No effects.
  int64_t find_cached_prefix(std::span<const int32_t> tokens) const;

  // Creates seq (a slot), attaches the first cached_tokens of `tokens` from the prefix cache
  // (cached_tokens: 0 or what find_cached_prefix(tokens) returned, with nothing changed between),
  // restores the boundary state there, and makes room for num_tokens positions. The sequence's
  // SequenceKv then starts at num_tokens() == cached_tokens. All or nothing: kNoSpace (no slot or
  // too few blocks) changes nothing. Counts `tokens` as queried and cached_tokens as hit.
  KvStatus add_sequence(KvSeqId seq, std::span<const int32_t> tokens, int64_t cached_tokens, int64_t num_tokens);

  // Makes room for positions [0, num_tokens) of seq (never shrinks). All or nothing; evicts unreferenced
  // cached blocks (least recently used first) only when no free block is left.
  KvStatus allocate(KvSeqId seq, int64_t num_tokens);

  // After a forward pass: seq's full blocks not yet published enter the prefix cache, keyed by
  // `tokens` (the sequence's ids, at least its num_tokens()). When num_tokens() ends exactly on a
  // block boundary the state there is snapshotted too, making that block a resume point; so a
  // scheduler that wants a resume point at the end of a prompt's full blocks ends a chunk there.
  void publish(KvSeqId seq, std::span<const int32_t> tokens);

  // Releases seq's blocks (published ones stay cached, tail blocks first in line for eviction) and
  // its slot, and forgets seq.
  void free(KvSeqId seq);

  // The state of seq for the forward pass (valid until free(seq)). The view's reserve() allocates;
  // its row and frontier pointers need host storage with f32 rows (the CPU backend), while
  // num_tokens()/set_num_tokens()/reserve() work on any storage.
  SequenceKv& sequence_kv(KvSeqId seq);

  bool contains(KvSeqId seq) const { return seqs_.count(seq) != 0; }
  // Device backends address rows through these: seq's block ids (logical block i -> physical id)
  // and its slot index in the slot region.
  std::span<const int32_t> block_table(KvSeqId seq) const;
  int64_t slot(KvSeqId seq) const;
  // The sequence whose sequence_kv() view `kv` is, when it belongs to this manager (a device
  // backend maps the SequenceKv of a batch back to its block table and slot); else nullopt.
  std::optional<KvSeqId> id_of(const SequenceKv& kv) const;

  KvCacheUsage usage() const;
  const KvPoolLayout& layout() const { return layout_; }
  KvStorage& storage() { return *storage_; }
  // Bookkeeping checks for tests: refcounts equal table references, lists partition the blocks.
  // Returns an empty string when consistent, else the first problem.
  std::string check_invariants() const;

 private:
  class View;
  struct Sequence;

  KvPoolLayout layout_;
  std::unique_ptr<KvStorage> storage_;
  BlockPool blocks_;
  SnapshotPool snapshots_;
  std::vector<int64_t> free_slots_;
  std::unordered_map<KvSeqId, std::unique_ptr<Sequence>> seqs_;
  int64_t prefix_queried_tokens_ = 0, prefix_hit_tokens_ = 0;

  Sequence& get(KvSeqId seq, const char* caller) const;
  struct PrefixMatch;
  PrefixMatch match_prefix(std::span<const int32_t> tokens, int64_t max_blocks) const;
  bool grow_table(Sequence& s, int64_t num_tokens);
  void init_slot(int64_t slot);
  void capture_snapshot(const Sequence& s, int64_t snapshot);
  void restore_snapshot(const Sequence& s, int64_t snapshot, int64_t boundary);
  void release_snapshot_of(int32_t block);
};

}  // namespace ds4
