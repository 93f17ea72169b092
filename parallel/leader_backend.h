// LeaderBackend: rank 0's Backend under expert parallelism (docs/PARALLEL.md sections 4 and 7). A
// decorator the Engine runs unchanged: forward() describes the batch as a StepMessage (each
// sequence's pool slot, block table, start and tokens, plus the KV operations the pool recorded
// since the last step), broadcasts it so the followers (parallel/follower.h) run the same forward,
// then runs the local backend (which joins the followers in the per-layer all-reduce). rollback()
// and rollback_all() send their operations at once and then roll back locally, so every rank runs
// a device backend's re-feed (a forward with collectives) together. stop() sends the followers home.
// Engine thread only (stop(): after the engine thread has ended).
#pragma once
#include <cstdint>
#include <memory>

#include "engine/forward.h"
#include "kvcache/kv_cache_manager.h"
#include "parallel/communicator.h"
#include "parallel/recording_kv_storage.h"
#include "parallel/step_message.h"

namespace ds4 {

// The message entry of one sequence of the leader's batch: `manager`'s slot and block table of
// in.kv (after reserving the positions the forward will write, so the table covers them), start,
// tokens, flags, and `rank` (kAllRanks in replicated mode). Throws std::invalid_argument for a
// sequence that is not a view of `manager` or whose KV cannot be reserved.
StepSequence describe_sequence(KvCacheManager& manager, const SequenceInput& in, int32_t rank);
// Sends the stop message numbered `step` (the followers return).
void send_stop(Communicator& comm, uint64_t step);

class LeaderBackend final : public Backend {
 public:
  // All must outlive this object; `recorder` must be the storage of `manager`; comm.rank() == 0.
  LeaderBackend(Backend& local, Communicator& comm, KvCacheManager& manager, RecordingKvStorage& recorder);
  // The same, owning the local backend (ds4serve's rank 0).
  LeaderBackend(std::unique_ptr<Backend> local, Communicator& comm, KvCacheManager& manager, RecordingKvStorage& recorder);
  ~LeaderBackend() override;  // stop(), errors swallowed

  // Throws CommError when the broadcast fails; std::invalid_argument for a sequence that is not a
  // view of `manager` or whose KV cannot be reserved (nothing is sent then).
  ForwardOutput forward(const ForwardBatch& batch) override;
  bool supports_rollback() const override { return local_.supports_rollback(); }
  void rollback(SequenceKv& kv, int64_t num_tokens) override;
  void rollback_all(std::span<const RollbackTo> rollbacks) override;
  bool supports_device_sampling() const override { return local_.supports_device_sampling(); }
  std::vector<int32_t> sample_rows(std::span<const RowSampling> rows) override { return local_.sample_rows(rows); }

  // Tells the followers to return (idempotent). Throws CommError when the broadcast fails.
  void stop();
  uint64_t steps() const { return step_; }

 private:
  std::unique_ptr<Backend> owned_;  // null when the caller owns the local backend
  Backend& local_;
  Communicator& comm_;
  KvCacheManager& manager_;
  RecordingKvStorage& recorder_;
  uint64_t step_ = 0;
  bool stopped_ = false;
};

}  // namespace ds4
