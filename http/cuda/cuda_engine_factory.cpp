// make_cuda_engine (see cuda_engine_factory.h): device, weights (and the MTP module's), KV pool from
// the memory left, backend (and the MTP draft model). Under expert parallelism (request.comm) the
// weights hold the rank's experts only; with replicated attention rank 0's pool plan is adopted by
// every rank and rank 0's backend is a LeaderBackend over a recording pool storage; with
// data-parallel attention every rank keeps its own pool and rank 0 schedules over all of them
// (RankKvPools) through a DpLeaderBackend.
#include "http/cuda/cuda_engine_factory.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <stdexcept>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_kv.h"
#include "engine/cuda/cuda_mtp.h"
#include "engine/kv_geometry.h"
#include "engine/load_error.h"
#include "parallel/dp_leader_backend.h"
#include "parallel/leader_backend.h"
#include "parallel/rank_setup.h"
#include "parallel/recording_kv_storage.h"
#include "parallel/remote_kv_storage.h"
#include "scheduler/rank_kv_pools.h"

namespace ds4::http {
namespace {

constexpr double kGiB = double(1ull << 30);

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / kGiB);
  return buf;
}

uint64_t free_device_bytes() {
  size_t free_bytes = 0, total_bytes = 0;
  DS4_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return free_bytes;
}

// Progress lines every 10% through the request's log.
DeviceWeights::Progress progress_log(const DeviceEngineRequest& r, const char* what) {
  auto last = std::make_shared<int>(-1);
  return [log = r.log, what, last](uint64_t done, uint64_t total) {
    const int pct = total ? static_cast<int>(100.0 * double(done) / double(total)) : 100;
    if (!log || pct / 10 == *last / 10) return;
    *last = pct;
    log(std::string(what) + ": " + std::to_string(pct) + "% (" + gib(double(done)) + " of " + gib(double(total)) + ")");
  };
}

// This rank's routed experts (all of them on one GPU).
ExpertShard rank_experts(const DeviceEngineRequest& r) {
  return r.comm ? expert_shard(r.comm->rank(), r.comm->world(), r.config->n_expert) : ExpertShard{0, r.config->n_expert};
}

DeviceWeights device_weights(const DeviceEngineRequest& r) {
  const ExpertShard experts = rank_experts(r);
  if (!r.weights)
    return DeviceWeights::synthesize(*r.config, r.synth_scheme, r.synth_seed, r.synth_threads,
                                     progress_log(r, "synthesizing weights on the GPU"), r.comm ? experts : ExpertShard{});
  const Weights host = r.comm ? expert_slice(*r.weights, experts) : *r.weights;
  const uint64_t need = DeviceWeights::required_bytes(host), free_bytes = free_device_bytes();
  if (need > free_bytes)
    throw LoadError("--backend cuda: the weights need " + gib(double(need)) + " but the device has " +
                    gib(double(free_bytes)) + " free");
  return DeviceWeights::upload(host, progress_log(r, "uploading weights"));
}

// The MTP module's weights on the device, when the request asks for one.
std::optional<DeviceMtpWeights> mtp_weights(const DeviceEngineRequest& r) {
  if (r.mtp) return DeviceMtpWeights::upload(*r.mtp);
  if (r.mtp_synth) return DeviceMtpWeights::synthesize(*r.config, r.synth_scheme, r.mtp_synth_seed, r.synth_threads);
  return std::nullopt;
}

// The KV budget: every free byte but the reserve, capped by kv_memory_gib when given.
int64_t kv_budget_bytes(const DeviceEngineRequest& r) {
  const double free_bytes = double(free_device_bytes());
  double budget = free_bytes - r.reserve_gib * kGiB;
  if (r.kv_memory_gib > 0) budget = std::min(budget, r.kv_memory_gib * kGiB);
  if (budget <= 0)
    throw LoadError("--backend cuda: no device memory left for the KV pool (" + gib(free_bytes) +
                    " free after the weights, " + gib(r.reserve_gib * kGiB) + " reserved for the step scratch)");
  return static_cast<int64_t>(budget);
}

KvPoolLayout plan_layout(const DeviceEngineRequest& r, int64_t budget) {
  const KvPoolOptions options{.layout = KvLayout::kF32, .budget_bytes = budget, .max_sequences = r.max_num_seqs,
                              .snapshot_fraction = r.snapshot_fraction};
  try {
    return plan_kv_pool(kv_geometry(*r.config), options);
  } catch (const std::invalid_argument& e) {
    throw LoadError(std::string("--backend cuda: KV pool of ") + gib(double(budget)) + ": " + e.what());
  }
}

std::unique_ptr<PagedKvPool> device_pool(const DeviceEngineRequest& r, int64_t budget) {
  const KvPoolLayout layout = plan_layout(r, budget);
  return std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layout, make_cuda_kv_storage(layout)));
}

// Expert parallelism: the ranks check that their expert ranges tile the experts, rank 0 plans the
// pool from the smallest KV budget of the group and sends the counts; every other rank builds the
// same layout (and fails clearly when it does not fit). Rank 0's storage records the pool's copies
// and fills for the step messages (*recorder).
std::unique_ptr<PagedKvPool> rank_pool(const DeviceEngineRequest& r, int64_t budget, RecordingKvStorage** recorder) {
  Communicator& comm = *r.comm;
  check_expert_ranges(comm, rank_experts(r), r.config->n_expert);
  const int64_t group_budget = min_over_ranks(comm, budget);
  RankSetup mine{comm.world(), config_fingerprint(*r.config), 0, 0, 0};
  KvPoolLayout layout;
  if (comm.rank() == 0) {
    layout = plan_layout(r, group_budget);
    mine.num_blocks = layout.num_blocks, mine.num_slots = layout.num_slots, mine.num_snapshots = layout.num_snapshots;
  }
  const RankSetup setup = exchange_setup(comm, mine);
  if (comm.rank() != 0) {
    layout = layout_kv_pool(kv_geometry(*r.config), KvLayout::kF32, setup.num_blocks, setup.num_slots, setup.num_snapshots);
    if (layout.total_bytes() > budget)
      throw LoadError("rank " + std::to_string(comm.rank()) + ": rank 0's KV pool (" + gib(double(layout.total_bytes())) +
                      ") does not fit the " + gib(double(budget)) + " this GPU has for it");
    return std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layout, make_cuda_kv_storage(layout)));
  }
  auto storage = std::make_unique<RecordingKvStorage>(make_cuda_kv_storage(layout));
  *recorder = storage.get();
  return std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layout, std::move(storage)));
}

// Data-parallel attention: every rank plans its own pool from its own budget and learns every
// rank's counts; rank 0 schedules over all of them: its own pool in device memory and, for each
// other rank, a plan of that rank's pool whose storage only records the operations for it
// (recorders[r]). *own: this rank's own pool.
std::unique_ptr<KvPool> data_parallel_pools(const DeviceEngineRequest& r, int64_t budget,
                                            std::vector<RecordingKvStorage*>& recorders, KvCacheManager** own) {
  Communicator& comm = *r.comm;
  check_expert_ranges(comm, rank_experts(r), r.config->n_expert);
  const KvPoolLayout layout = plan_layout(r, budget);
  const RankSetup mine{comm.world(), config_fingerprint(*r.config), layout.num_blocks, layout.num_slots, layout.num_snapshots};
  const std::vector<RankSetup> all = gather_setups(comm, mine);
  auto own_pool = std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layout, make_cuda_kv_storage(layout)));
  *own = &own_pool->manager();
  if (comm.rank() != 0) return own_pool;
  std::vector<std::unique_ptr<PagedKvPool>> pools;
  pools.push_back(std::move(own_pool));
  recorders.assign(all.size(), nullptr);
  for (size_t q = 1; q < all.size(); ++q) {
    const KvPoolLayout theirs =
        layout_kv_pool(kv_geometry(*r.config), KvLayout::kF32, all[q].num_blocks, all[q].num_slots, all[q].num_snapshots);
    auto recorder = std::make_unique<RecordingKvStorage>(make_remote_storage(theirs));
    recorders[q] = recorder.get();
    pools.push_back(std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(theirs, std::move(recorder))));
  }
  return std::make_unique<RankKvPools>(std::move(pools));
}

// The KV bytes the scheduler's pool spans (every rank's under data-parallel attention).
int64_t pool_bytes(KvPool& pool, const KvCacheManager& own) {
  auto* ranks = dynamic_cast<RankKvPools*>(&pool);
  if (!ranks) return own.layout().total_bytes();
  int64_t total = 0;
  for (int q = 0; q < ranks->world(); ++q) total += ranks->pool(q).manager().layout().total_bytes();
  return total;
}

}  // namespace

DeviceEngine make_cuda_engine(const DeviceEngineRequest& r) {
  if (!r.config) throw LoadError("make_cuda_engine: no model config");
  // Replicated attention: the MTP draft runs on rank 0 alone (its block is never sharded); the
  // verification and rollbacks reach the followers as step messages.
  if (r.comm && r.data_parallel && (r.mtp || r.mtp_synth))
    throw LoadError("--mtp with data-parallel attention (--attention dp) is not implemented yet");
  CudaBackend::select_device(r.device);  // throws LoadError naming why no device is usable
  cudaDeviceProp prop{};
  DS4_CUDA_CHECK(cudaGetDeviceProperties(&prop, r.device));
  const auto t0 = std::chrono::steady_clock::now();
  DeviceWeights weights = device_weights(r);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const uint64_t weight_bytes = weights.bytes();
  std::optional<DeviceMtpWeights> mtp = mtp_weights(r);  // before the KV budget takes the rest
  const int64_t budget = kv_budget_bytes(r);
  DeviceEngine e;
  RecordingKvStorage* recorder = nullptr;            // replicated attention, rank 0
  std::vector<RecordingKvStorage*> rank_recorders;  // data-parallel attention, rank 0
  if (r.comm && r.data_parallel) {
    e.pool = data_parallel_pools(r, budget, rank_recorders, &e.own_pool);
  } else {
    std::unique_ptr<PagedKvPool> pool = r.comm ? rank_pool(r, budget, &recorder) : device_pool(r, budget);
    e.own_pool = &pool->manager();
    e.pool = std::move(pool);
  }
  CudaBackendOptions bo;
  bo.forward = r.forward;
  bo.device = r.device;
  bo.kv_manager = e.own_pool;
  if (r.comm) bo.expert_parallel = {r.comm, rank_experts(r), r.data_parallel};
  auto backend = std::make_unique<CudaBackend>(*r.config, std::move(weights), bo);
  if (mtp) e.draft = std::make_unique<CudaMtpDraftModel>(*backend, *r.config, std::move(*mtp));
  if (recorder)
    e.backend = std::make_unique<LeaderBackend>(std::move(backend), *r.comm, *e.own_pool, *recorder);
  else if (!rank_recorders.empty())
    e.backend = std::make_unique<DpLeaderBackend>(std::move(backend), *r.comm, static_cast<RankKvPools&>(*e.pool),
                                                  rank_recorders, r.config->n_vocab);
  else
    e.backend = std::move(backend);
  e.kv_bytes = pool_bytes(*e.pool, *e.own_pool);
  char line[320];
  std::snprintf(line, sizeof line,
                "CUDA device %d (%s): weights %.2f GB %s in %.1f s%s, KV pool %s on the device, %s free", r.device,
                prop.name, double(weight_bytes) / 1e9, r.weights ? "uploaded" : "synthesized", load_s,
                e.draft ? " + MTP draft module" : "", gib(double(e.kv_bytes)).c_str(), gib(double(free_device_bytes())).c_str());
  e.description = line;
  return e;
}

}  // namespace ds4::http
