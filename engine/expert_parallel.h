// ExpertParallel: a backend's part in expert parallelism (docs/PARALLEL.md): the routed experts
// this rank computes and the Communicator that combines the ranks' routed outputs once per MoE layer.
// Replicated mode: everything else (attention, shared expert, router, head) runs on every rank;
// data-parallel mode: each rank runs them for its own sequences only. Default:
// inactive (one process computes every expert, no collective). expert_slice() gives the views of a
// rank's own experts only, for a device backend that uploads just those (memory per rank).
#pragma once
#include <utility>
#include <vector>

#include "engine/weights.h"
#include "parallel/communicator.h"
#include "parallel/expert_shard.h"

namespace ds4 {

struct ExpertParallel {
  ExpertParallel() = default;
  ExpertParallel(Communicator* comm, ExpertShard shard, bool data_parallel = false, std::vector<ExpertShard> shards = {})
      : comm(comm), shard(shard), data_parallel(data_parallel), shards(std::move(shards)) {}
  Communicator* comm = nullptr;  // null: inactive
  ExpertShard shard;             // this rank's experts (all of them when inactive)
  // Data-parallel attention (PARALLEL.md sections 3 and 5): each rank runs its own sequences, and
  // the MoE sends each (token, expert) route to the expert's owner and the weighted outputs back
  // (two all-to-alls per layer) instead of all-reducing. Off: replicated attention (every rank runs
  // every sequence) with the all-reduce.
  bool data_parallel = false;
  // Every rank's experts in rank order (data-parallel mode; contiguous, covering all experts, entry
  // rank() equal to `shard`). Empty: expert_shard(r, world, n_expert) for every rank.
  std::vector<ExpertShard> shards;
  bool active() const { return comm != nullptr; }
  bool computes(int expert) const { return !active() || shard.owns(expert); }
  // The rank that owns `expert` (data-parallel mode, `shards` filled in).
  int owner(int expert) const {
    for (size_t r = 0; r < shards.size(); ++r)
      if (shards[r].owns(expert)) return static_cast<int>(r);
    return -1;
  }
};

// `w` with each main layer's routed-expert tensors (ffn_{gate,up,down}_exps) narrowed to the
// shard's experts: data at expert shard.first, ne2 = shard.count (local expert i = global
// shard.first + i); every other view unchanged. Throws LoadError when the shard is not a
// non-empty range of the model's experts.
Weights expert_slice(const Weights& w, ExpertShard shard);

}  // namespace ds4
