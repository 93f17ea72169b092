// BudgetKvPool implementation (see budget_kv_pool.h).
#include "scheduler/budget_kv_pool.h"

#include <cstdio>
#include <cstdlib>

namespace ds4 {
namespace {

[[noreturn]] void fail(const char* what, SeqId seq) {
  std::fprintf(stderr, "%s:%d: BudgetKvPool: %s (sequence %llu)\n", __FILE__, __LINE__, what,
               static_cast<unsigned long long>(seq));
  std::abort();
}

}  // namespace

BudgetKvPool::BudgetKvPool(int64_t total_blocks, int64_t block_tokens, int max_sequences, StateFactory factory)
    : total_blocks_(total_blocks), block_tokens_(block_tokens), max_sequences_(max_sequences), factory_(std::move(factory)) {
  if (total_blocks < 1 || block_tokens < 1 || max_sequences < 1 || !factory_) fail("bad configuration", 0);
}

bool BudgetKvPool::admit(SeqId seq, std::span<const int32_t> tokens, int64_t cached_tokens, int64_t num_tokens) {
  if (seqs_.count(seq)) fail("admitted twice", seq);
  if (cached_tokens != 0) fail("no prefix cache here", seq);
  if (num_tokens < static_cast<int64_t>(tokens.size()) || num_tokens < 1) fail("bad admission size", seq);
  const int64_t need = blocks_for(num_tokens);
  if (static_cast<int>(seqs_.size()) >= max_sequences_ || used_blocks_ + need > total_blocks_) return false;
  // A backend-owned state (a device slot) may be unavailable even when the accounting has room.
  State s{factory_(), need};
  if (!s.kv || !s.kv->reserve(need * block_tokens_)) return false;
  used_blocks_ += need;
  seqs_.emplace(seq, std::move(s));
  return true;
}

bool BudgetKvPool::grow(SeqId seq, int64_t num_tokens) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) fail("grow of an unknown sequence", seq);
  const int64_t extra = blocks_for(num_tokens) - it->second.blocks;
  if (extra <= 0) return true;
  if (used_blocks_ + extra > total_blocks_) return false;
  if (!it->second.kv->reserve((it->second.blocks + extra) * block_tokens_)) return false;
  used_blocks_ += extra;
  it->second.blocks += extra;
  return true;
}

void BudgetKvPool::release(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) fail("release of an unknown sequence", seq);
  used_blocks_ -= it->second.blocks;
  seqs_.erase(it);
}

SequenceKv& BudgetKvPool::kv(SeqId seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) fail("kv of an unknown sequence", seq);
  return *it->second.kv;
}

KvUsage BudgetKvPool::usage() const {
  return KvUsage{.block_tokens = block_tokens_, .total_blocks = total_blocks_, .used_blocks = used_blocks_, .cached_blocks = 0};
}

}  // namespace ds4
