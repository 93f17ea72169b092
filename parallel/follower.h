// Follower: the loop of a rank > 0 under expert parallelism (docs/PARALLEL.md section 7): receive
// the leader's StepMessage, apply its KV operations (storage copies / fills, backend rollbacks) in
// order to the own pool storage, run the forward over MirrorSequenceKv views (one per slot, kept
// across steps); until the stop message. Replicated attention: every operation and sequence, the
// logits dropped (the local backend joins the leader's per-layer all-reduce). Data-parallel
// attention: only the operations and sequences of this rank (possibly none: the backend still
// joins every layer's all-to-alls), the logit rows and counters sent to rank 0
// (parallel/step_results.h), and for a sample message the tokens of this rank's rows. Owned and
// run by the rank's main thread.
#pragma once
#include <cstdint>
#include <map>
#include <memory>

#include "engine/forward.h"
#include "kvcache/kv_storage.h"
#include "parallel/communicator.h"
#include "parallel/mirror_kv.h"
#include "parallel/step_message.h"

namespace ds4 {

class Follower {
 public:
  // All must outlive the follower; `storage` has `layout` (the leader's pool layout).
  Follower(Communicator& comm, Backend& backend, const KvPoolLayout& layout, KvStorage& storage);
  // Runs steps until the stop message; returns the number of messages before it (forwards and
  // rollback operations). Throws CommError on a
  // transport failure, a malformed or out-of-order message, or an operation outside the pool.
  uint64_t run();
  // One message: false when it was the stop message.
  bool step();
  // The view of a slot (tests compare it with the leader's).
  MirrorSequenceKv& slot_view(int64_t slot);
  // Sequence entries this rank has run in forwards so far.
  uint64_t sequences_run() const { return sequences_run_; }

 private:
  bool mine(int32_t rank) const { return rank == kAllRanks || rank == comm_.rank(); }
  void forward(const StepMessage& m);
  void sample(const StepMessage& m);
  void apply(const KvOp& op);
  void apply_all(const std::vector<KvOp>& ops);  // runs of rollbacks go to rollback_all together
  void check_range(int region, int64_t offset, int64_t bytes) const;

  Communicator& comm_;
  Backend& backend_;
  const KvPoolLayout& layout_;
  KvStorage& storage_;
  std::map<int64_t, std::unique_ptr<MirrorSequenceKv>> slots_;
  uint64_t step_ = 0;
  uint64_t sequences_run_ = 0;
};

}  // namespace ds4
