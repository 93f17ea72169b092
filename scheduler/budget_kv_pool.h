// BudgetKvPool: a KvPool that accounts KV in blocks against a fixed budget and keeps each admitted
// sequence's state in a SequenceKv made by a factory (ContiguousKv for the CPU backend, a device
// sequence of the CUDA backend, a fake in tests; a null state or a failed reserve() counts as no
// space). No prefix cache. Used by the tests, the benchmark, and as the fallback pool before the
// paged pool exists. Invariant: used_blocks = sum over sequences of ceil(room / block_tokens).
#pragma once
#include <functional>
#include <memory>
#include <unordered_map>

#include "scheduler/kv_pool.h"

namespace ds4 {

class BudgetKvPool final : public KvPool {
 public:
  using StateFactory = std::function<std::unique_ptr<SequenceKv>()>;
  // total_blocks >= 1 blocks of block_tokens >= 1 positions; at most max_sequences states at once.
  BudgetKvPool(int64_t total_blocks, int64_t block_tokens, int max_sequences, StateFactory factory);

  int64_t block_tokens() const override { return block_tokens_; }
  int64_t max_sequence_tokens() const override { return total_blocks_ * block_tokens_; }
  int64_t find_cached_prefix(std::span<const int32_t>) override { return 0; }
  bool admit(SeqId seq, std::span<const int32_t> tokens, int64_t cached_tokens, int64_t num_tokens) override;
  bool grow(SeqId seq, int64_t num_tokens) override;
  void computed(SeqId, std::span<const int32_t>, int64_t) override {}
  void release(SeqId seq) override;
  SequenceKv& kv(SeqId seq) override;
  KvUsage usage() const override;
  size_t num_sequences() const { return seqs_.size(); }

 private:
  struct State {
    std::unique_ptr<SequenceKv> kv;
    int64_t blocks = 0;
  };
  int64_t blocks_for(int64_t num_tokens) const { return (num_tokens + block_tokens_ - 1) / block_tokens_; }

  int64_t total_blocks_, block_tokens_;
  int max_sequences_;
  StateFactory factory_;
  int64_t used_blocks_ = 0;
  std::unordered_map<SeqId, State> seqs_;
};

}  // namespace ds4
