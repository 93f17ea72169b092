// ExpertShard: which routed experts one rank owns under expert parallelism (docs/PARALLEL.md
// section 2): contiguous ranges, sizes differing by at most one when world does not divide the
// expert count. Pure functions; used by the backends and the launcher.
#pragma once
#include <stdexcept>
#include <string>

namespace ds4 {

struct ExpertShard {
  int first = 0;  // first owned expert id
  int count = 0;  // owned experts [first, first + count)
  bool owns(int expert) const { return expert >= first && expert < first + count; }
};

// Rank r of world W owns [r * n / W, (r + 1) * n / W). Throws std::invalid_argument when world < 1,
// rank is outside [0, world) or world > n_expert (a rank without experts is a configuration error).
inline ExpertShard expert_shard(int rank, int world, int n_expert) {
  if (world < 1 || rank < 0 || rank >= world)
    throw std::invalid_argument("expert_shard: rank " + std::to_string(rank) + " of world " + std::to_string(world));
  if (world > n_expert)
    throw std::invalid_argument("expert_shard: world " + std::to_string(world) + " exceeds the " +
                                std::to_string(n_expert) + " routed experts");
  const long long lo = static_cast<long long>(rank) * n_expert / world;
  const long long hi = static_cast<long long>(rank + 1) * n_expert / world;
  return {static_cast<int>(lo), static_cast<int>(hi - lo)};
}

}  // namespace ds4
