// ExpertParallel: a backend's part in expert parallelism (docs/PARALLEL.md): the routed experts
// this rank computes and the Communicator that sums the ranks' routed outputs once per MoE layer.
// Everything else (attention, shared expert, router, head) runs replicated on every rank. Default:
// inactive (one process computes every expert, no collective).
#pragma once
#include "parallel/communicator.h"
#include "parallel/expert_shard.h"

namespace ds4 {

struct ExpertParallel {
  Communicator* comm = nullptr;  // null: inactive
  ExpertShard shard;             // this rank's experts (all of them when inactive)
  bool active() const { return comm != nullptr; }
  bool computes(int expert) const { return !active() || shard.owns(expert); }
};

}  // namespace ds4
