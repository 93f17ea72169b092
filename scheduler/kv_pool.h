// KvPool: the scheduler's view of the KV pool: per-sequence admission and growth in whole blocks,
// prefix-cache lookup, release, and the SequenceKv the forward pass reads and writes. Every call is
// all-or-nothing (a false return changes nothing). Implemented by BudgetKvPool (scheduler/, no
// prefix cache) and PagedKvPool (the adapter over kvcache/'s manager). Called on the engine thread only.
#pragma once
#include <cstdint>
#include <span>

#include "kvcache/sequence_kv.h"
#include "scheduler/engine_api.h"

namespace ds4 {

using SeqId = uint64_t;

class KvPool {
 public:
  virtual ~KvPool() = default;

  // Positions per block (the unit of accounting and of prefix sharing).
  virtual int64_t block_tokens() const = 0;
  // Most positions one sequence can hold when it is alone in the pool.
  virtual int64_t max_sequence_tokens() const = 0;
  // True when the pool keeps prefix-cache resume points only where a step's chunk ends on a block
  // boundary: the scheduler then ends prefill chunks on block boundaries where it can.
  virtual bool aligned_chunks() const { return false; }
  // Leading tokens of `tokens` whose KV state the prefix cache holds: a multiple of block_tokens(),
  // and less than tokens.size() (the last token is always computed, to produce logits). No effects.
  virtual int64_t find_cached_prefix(std::span<const int32_t> tokens) = 0;
  // Creates seq's state holding the cached prefix (cached_tokens, as returned by find_cached_prefix
  // for these tokens, or 0; the SequenceKv then starts at that position) and room for num_tokens
  // positions in all. False when the pool cannot take it.
  virtual bool admit(SeqId seq, std::span<const int32_t> tokens, int64_t cached_tokens, int64_t num_tokens) = 0;
  // Makes room for num_tokens positions of an admitted seq; false when out of space.
  virtual bool grow(SeqId seq, int64_t num_tokens) = 0;
  // seq has computed the KV of tokens[0, num_computed): full blocks may enter the prefix cache.
  virtual void computed(SeqId seq, std::span<const int32_t> tokens, int64_t num_computed) = 0;
  // Frees seq's blocks (its cached full blocks stay reusable) and forgets seq.
  virtual void release(SeqId seq) = 0;
  // The state of an admitted seq for the forward pass.
  virtual SequenceKv& kv(SeqId seq) = 0;
  virtual KvUsage usage() const = 0;
  // True when releasing admitted seq `other` can make room for admitted seq `seq` (one pool: always;
  // one pool per rank, scheduler/rank_kv_pools.h: only on the same rank). Preemption picks its
  // victims among these.
  virtual bool shares_room(SeqId seq, SeqId other) const {
    (void)seq, (void)other;
    return true;
  }
  // Groups of sequences that share a step's token budget: one for one pool; one per rank under
  // data-parallel attention (each rank computes its own sequences' tokens, and the step lasts as
  // long as the busiest one). The scheduler gives each group an equal share of
  // max_num_batched_tokens. budget_group: the group of an admitted seq.
  virtual int budget_groups() const { return 1; }
  virtual int budget_group(SeqId seq) const {
    (void)seq;
    return 0;
  }
};

}  // namespace ds4
