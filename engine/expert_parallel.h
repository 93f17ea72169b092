// ExpertParallel: a backend's part in expert parallelism (docs/PARALLEL.md): the routed experts
// this rank computes and the Communicator that sums the ranks' routed outputs once per MoE layer.
// Everything else (attention, shared expert, router, head) runs replicated on every rank. Default:
// inactive (one process computes every expert, no collective). expert_slice() gives the views of a
// rank's own experts only, for a device backend that uploads just those (memory per rank).
#pragma once
#include "engine/weights.h"
#include "parallel/communicator.h"
#include "parallel/expert_shard.h"

namespace ds4 {

struct ExpertParallel {
  Communicator* comm = nullptr;  // null: inactive
  ExpertShard shard;             // this rank's experts (all of them when inactive)
  bool active() const { return comm != nullptr; }
  bool computes(int expert) const { return !active() || shard.owns(expert); }
};

// `w` with each main layer's routed-expert tensors (ffn_{gate,up,down}_exps) narrowed to the
// shard's experts: data at expert shard.first, ne2 = shard.count (local expert i = global
// shard.first + i); every other view unchanged. Throws LoadError when the shard is not a
// non-empty range of the model's experts.
Weights expert_slice(const Weights& w, ExpertShard shard);

}  // namespace ds4
