// RankKvPools (see rank_kv_pools.h).
#include "scheduler/rank_kv_pools.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace ds4 {

RankKvPools::RankKvPools(std::vector<std::unique_ptr<PagedKvPool>> pools) : pools_(std::move(pools)) {
  if (pools_.empty()) throw std::invalid_argument("RankKvPools: no pool");
  for (const auto& p : pools_) {
    if (!p) throw std::invalid_argument("RankKvPools: a rank without a pool");
    if (p->block_tokens() != pools_[0]->block_tokens())
      throw std::invalid_argument("RankKvPools: the ranks' pools have different block sizes");
  }
}

int RankKvPools::rank_of(SeqId seq) const {
  const auto it = rank_.find(seq);
  return it == rank_.end() ? -1 : it->second;
}

int RankKvPools::rank_of(const SequenceKv& kv) const {
  for (int r = 0; r < world(); ++r)
    if (pools_[size_t(r)]->manager().id_of(kv)) return r;
  return -1;
}

PagedKvPool& RankKvPools::owner(SeqId seq) {
  const int r = rank_of(seq);
  if (r < 0) {
    std::fprintf(stderr, "%s:%d: RankKvPools: sequence %llu is not admitted\n", __FILE__, __LINE__,
                 static_cast<unsigned long long>(seq));
    std::abort();
  }
  return *pools_[size_t(r)];
}

int64_t RankKvPools::max_sequence_tokens() const {
  int64_t most = 0;
  for (const auto& p : pools_) most = std::max(most, p->max_sequence_tokens());
  return most;
}

int64_t RankKvPools::room(int rank) const {
  const KvCacheUsage u = pools_[size_t(rank)]->manager().usage();
  return u.sequences >= u.max_sequences ? 0 : u.free_blocks + u.cached_blocks;
}

std::vector<int> RankKvPools::by_load() const {
  struct Load {
    int rank;
    int64_t sequences, room;
  };
  std::vector<Load> loads;
  for (int r = 0; r < world(); ++r) loads.push_back({r, pools_[size_t(r)]->manager().usage().sequences, room(r)});
  std::stable_sort(loads.begin(), loads.end(), [](const Load& a, const Load& b) {
    return a.sequences != b.sequences ? a.sequences < b.sequences : a.room > b.room;
  });
  std::vector<int> order;
  for (const Load& l : loads) order.push_back(l.rank);
  return order;
}

// The longest prefix a rank with room for the whole sequence holds (the longest of all when none
// has room: the admission then waits anyway).
int64_t RankKvPools::find_cached_prefix(std::span<const int32_t> tokens) {
  const int64_t bt = block_tokens();
  const int64_t blocks = (static_cast<int64_t>(tokens.size()) + bt - 1) / bt;
  int64_t best_with_room = -1, best = 0;
  for (int r = 0; r < world(); ++r) {
    const int64_t cached = pools_[size_t(r)]->find_cached_prefix(tokens);
    best = std::max(best, cached);
    if (room(r) >= blocks - cached / bt) best_with_room = std::max(best_with_room, cached);
  }
  return best_with_room >= 0 ? best_with_room : best;
}

// With a cached prefix only ranks whose cache holds exactly that prefix can take it; without one,
// any rank; the least loaded first.
bool RankKvPools::admit(SeqId seq, std::span<const int32_t> tokens, int64_t cached_tokens, int64_t num_tokens) {
  if (rank_.count(seq)) return false;
  for (int r : by_load()) {
    PagedKvPool& p = *pools_[size_t(r)];
    if (cached_tokens > 0 && p.find_cached_prefix(tokens) != cached_tokens) continue;
    if (p.admit(seq, tokens, cached_tokens, num_tokens)) {
      rank_[seq] = r;
      return true;
    }
  }
  return false;
}

void RankKvPools::release(SeqId seq) {
  owner(seq).release(seq);
  rank_.erase(seq);
}

KvUsage RankKvPools::usage() const {
  KvUsage sum{.block_tokens = block_tokens()};
  for (const auto& p : pools_) {
    const KvUsage u = p->usage();
    sum.total_blocks += u.total_blocks;
    sum.used_blocks += u.used_blocks;
    sum.cached_blocks += u.cached_blocks;
  }
  return sum;
}

}  // namespace ds4
