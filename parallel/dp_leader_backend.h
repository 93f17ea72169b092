// DpLeaderBackend: rank 0's Backend under data-parallel attention (docs/PARALLEL.md sections 3, 6
// and 7). The Engine runs it unchanged over RankKvPools: forward() names each sequence's rank, slot
// and block table in a version-2 StepMessage together with the KV operations recorded for each
// follower's pool, broadcasts it, runs rank 0's own sequences on the local backend (whose MoE
// exchanges routes with the other ranks), then gathers the followers' logit rows (host logits) and
// counters into one output in batch order, and moves the followers' sequence views on rank 0 to
// their new positions. sample_rows() (device sampling) sends the rows' sampling
// to the ranks holding them and gathers the drawn tokens. No rollback (speculative decoding is not
// available in this mode yet). Engine thread only (stop(): after the engine thread has ended).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/forward.h"
#include "parallel/communicator.h"
#include "parallel/recording_kv_storage.h"
#include "scheduler/rank_kv_pools.h"

namespace ds4 {

class DpLeaderBackend final : public Backend {
 public:
  // All must outlive this object; comm.rank() == 0, pools.world() == comm.world(); recorders[r]
  // (r >= 1) is the storage of pools.pool(r)'s manager (rank r's recorded operations), recorders[0]
  // is unused (rank 0's pool is the local backend's). Throws std::invalid_argument otherwise.
  DpLeaderBackend(Backend& local, Communicator& comm, RankKvPools& pools, std::vector<RecordingKvStorage*> recorders,
                  int64_t n_vocab);
  // The same, owning the local backend (ds4serve's rank 0).
  DpLeaderBackend(std::unique_ptr<Backend> local, Communicator& comm, RankKvPools& pools,
                  std::vector<RecordingKvStorage*> recorders, int64_t n_vocab);
  ~DpLeaderBackend() override;  // stop(), errors swallowed

  // Throws CommError when an exchange fails; std::invalid_argument for a sequence that is in no
  // rank's pool or whose KV cannot be reserved (nothing is sent then).
  ForwardOutput forward(const ForwardBatch& batch) override;
  bool supports_device_sampling() const override { return local_.supports_device_sampling(); }
  std::vector<int32_t> sample_rows(std::span<const RowSampling> rows) override;

  void stop();  // tells the followers to return (idempotent)
  uint64_t steps() const { return step_; }

 private:
  std::unique_ptr<Backend> owned_;  // null when the caller owns the local backend
  Backend& local_;
  Communicator& comm_;
  RankKvPools& pools_;
  std::vector<RecordingKvStorage*> recorders_;
  int64_t n_vocab_;
  std::vector<int32_t> row_ranks_;  // the rank of every logit row of the last forward
  uint64_t step_ = 0;
  bool stopped_ = false;
};

}  // namespace ds4
