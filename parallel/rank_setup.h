// RankSetup: what every rank must agree on before the first step (docs/PARALLEL.md sections 1 and
// 6): the world size, a fingerprint of the model config (every rank loaded or generated the same
// model) and the KV pool layout rank 0 planned (followers build the same pool, so block ids and
// slots mean the same everywhere). Rank 0 broadcasts its setup; the others check it against their
// own and adopt its pool sizes. Under data-parallel attention each rank keeps its own pool and
// rank 0 learns every rank's (gather_setups). Start-up only.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/model_config.h"
#include "parallel/communicator.h"
#include "parallel/expert_shard.h"

namespace ds4 {

struct RankSetup {
  int32_t world = 0;
  uint64_t config_fingerprint = 0;
  int64_t num_blocks = 0, num_slots = 0, num_snapshots = 0;  // the pool layout's counts (rank 0's; data-parallel: each rank's)
};

// A hash of the config fields that shape the forward pass and the KV pool.
uint64_t config_fingerprint(const ModelConfig& config);

// Rank 0 sends `mine`; every rank returns rank 0's setup. Throws CommError on a transport failure,
// or on a follower whose world or config fingerprint differs from rank 0's (naming both).
RankSetup exchange_setup(Communicator& comm, const RankSetup& mine);

// Data-parallel attention: each rank plans its own KV pool from its own memory; every rank gets
// every rank's setup in rank order (exchange_setup's checks first). Throws like exchange_setup.
std::vector<RankSetup> gather_setups(Communicator& comm, const RankSetup& mine);

// The smallest of every rank's `mine` (an all-gather of one value per rank). Replicated ranks hold
// the same KV pool, so rank 0 plans it from the smallest KV budget of the group.
int64_t min_over_ranks(Communicator& comm, int64_t mine);

// Every rank's expert range must tile [0, n_expert) in rank order with no gap or overlap (each
// rank computed its own from its rank and world). Throws CommError on every rank, naming the first
// rank whose range does not follow its predecessor's, or the uncovered tail.
void check_expert_ranges(Communicator& comm, ExpertShard mine, int n_expert);

}  // namespace ds4
