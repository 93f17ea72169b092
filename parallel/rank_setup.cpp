// RankSetup exchange (see rank_setup.h): one fixed-size broadcast with a magic and version; the KV
// budget and expert-range agreement gather one value per rank, the data-parallel pool counts one
// setup per rank.
#include "parallel/rank_setup.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace ds4 {
namespace {

constexpr uint32_t kMagic = 0x55535044;  // "DPSU"
constexpr uint32_t kVersion = 1;

struct Wire {
  uint32_t magic = kMagic, version = kVersion;
  int32_t world = 0, pad = 0;
  uint64_t fingerprint = 0;
  int64_t blocks = 0, slots = 0, snapshots = 0;
};

// Every rank's value, in rank order (host memory).
std::vector<uint64_t> gather_values(Communicator& comm, uint64_t mine) {
  std::vector<uint64_t> all(static_cast<size_t>(comm.world()));
  comm.all_gather(&mine, all.data(), sizeof mine, nullptr);
  return all;
}

uint64_t mix(uint64_t h, int64_t v) {
  for (int i = 0; i < 8; ++i) h = (h ^ ((static_cast<uint64_t>(v) >> (8 * i)) & 0xff)) * 0x100000001b3ull;  // FNV-1a
  return h;
}

}  // namespace

uint64_t config_fingerprint(const ModelConfig& c) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int64_t v : {int64_t(c.n_layer), int64_t(c.n_embd), int64_t(c.n_vocab), int64_t(c.n_head), int64_t(c.head_dim),
                    int64_t(c.n_expert), int64_t(c.n_expert_used), int64_t(c.n_hash_layers), int64_t(c.hc_count),
                    int64_t(c.indexer_dim), int64_t(c.context_length)})
    h = mix(h, v);
  for (int r : c.compress_ratios) h = mix(h, r);
  return h;
}

RankSetup exchange_setup(Communicator& comm, const RankSetup& mine) {
  Wire w;
  if (comm.rank() == 0) {
    w.world = mine.world, w.fingerprint = mine.config_fingerprint;
    w.blocks = mine.num_blocks, w.slots = mine.num_slots, w.snapshots = mine.num_snapshots;
  }
  comm.broadcast(&w, sizeof w, 0);
  const std::string me = "rank " + std::to_string(comm.rank());
  if (w.magic != kMagic || w.version != kVersion) throw CommError(me + ": rank 0 sent no setup of this version");
  if (w.world != mine.world || w.world != comm.world())
    throw CommError(me + ": world " + std::to_string(mine.world) + " but rank 0 runs a world of " + std::to_string(w.world));
  if (w.fingerprint != mine.config_fingerprint)
    throw CommError(me + ": its model differs from rank 0's (config fingerprints " + std::to_string(mine.config_fingerprint) +
                    " and " + std::to_string(w.fingerprint) + "): every rank must serve the same model");
  return {w.world, w.fingerprint, w.blocks, w.slots, w.snapshots};
}

int64_t min_over_ranks(Communicator& comm, int64_t mine) {
  int64_t least = mine;
  for (uint64_t v : gather_values(comm, static_cast<uint64_t>(mine))) least = std::min(least, static_cast<int64_t>(v));
  return least;
}

void check_expert_ranges(Communicator& comm, ExpertShard mine, int n_expert) {
  const uint64_t packed = (static_cast<uint64_t>(static_cast<uint32_t>(mine.first)) << 32) | static_cast<uint32_t>(mine.count);
  const std::vector<uint64_t> all = gather_values(comm, packed);
  int64_t next = 0;  // the first expert the next rank must own
  for (size_t r = 0; r < all.size(); ++r) {
    const int64_t first = static_cast<int32_t>(all[r] >> 32), count = static_cast<int32_t>(all[r] & 0xffffffffu);
    if (first != next || count < 1)
      throw CommError("rank " + std::to_string(comm.rank()) + ": expert ranges disagree: rank " + std::to_string(r) +
                      " owns [" + std::to_string(first) + ", " + std::to_string(first + count) + ") but should start at " +
                      std::to_string(next) + " with at least one expert");
    next = first + count;
  }
  if (next != n_expert)
    throw CommError("rank " + std::to_string(comm.rank()) + ": the ranks' expert ranges cover " + std::to_string(next) +
                    " of the " + std::to_string(n_expert) + " routed experts");
}

std::vector<RankSetup> gather_setups(Communicator& comm, const RankSetup& mine) {
  exchange_setup(comm, mine);  // world and model checked against rank 0's first
  Wire w;
  w.world = mine.world, w.fingerprint = mine.config_fingerprint;
  w.blocks = mine.num_blocks, w.slots = mine.num_slots, w.snapshots = mine.num_snapshots;
  std::vector<Wire> all(static_cast<size_t>(comm.world()));
  comm.all_gather(&w, all.data(), sizeof w, nullptr);
  std::vector<RankSetup> setups;
  for (const Wire& x : all) setups.push_back({x.world, x.fingerprint, x.blocks, x.slots, x.snapshots});
  return setups;
}

}  // namespace ds4
