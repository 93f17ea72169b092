// The seam between ds4serve and an accelerator backend: ModelService asks a DeviceEngineFactory
// for a backend, the scheduler's KV pool in device memory and optionally the MTP draft model. Only the ds4serve of a CUDA build
// gets a factory (http/cuda/cuda_engine_factory.h, plugged in by http/main.cpp), so the CUDA
// libraries stay out of every other binary and test. Start-up only; failures throw LoadError.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "engine/draft_model.h"
#include "engine/forward.h"
#include "engine/model_config.h"
#include "engine/model_layout.h"
#include "engine/weights.h"
#include "parallel/communicator.h"
#include "kvcache/kv_cache_manager.h"
#include "scheduler/kv_pool.h"

namespace ds4::http {

struct DeviceEngineRequest {
  const ModelConfig* config = nullptr;  // must outlive the engine
  const Weights* weights = nullptr;     // host weights to upload; null: synthesize in device memory
  QuantScheme synth_scheme = QuantScheme::kQ2;  // with weights == null: the synthetic model's
  uint64_t synth_seed = 1;
  int synth_threads = 0;                // host threads of the generator (0: all cores)
  ForwardOptions forward;
  int device = 0;
  int max_num_seqs = 32;
  double kv_memory_gib = 0;             // KV pool cap; 0: all free device memory but the reserve
  double reserve_gib = 6;               // device memory left free for step scratch and the sampler
  double snapshot_fraction = 0.05;      // share of the KV pool kept for prefix-cache resume points
  std::function<void(std::string_view)> log;
  // The MTP draft module on the device (speculative decoding), from host weights or generated as
  // `ds4serve-model synth --mtp --seed mtp_synth_seed` writes it; neither: no draft model.
  const MtpWeights* mtp = nullptr;
  bool mtp_synth = false;
  uint64_t mtp_synth_seed = 2;
  // Expert parallelism (docs/PARALLEL.md): this process is rank comm->rank() of comm->world() and
  // holds only its range of the routed experts. Rank 0 plans the KV pool and its backend broadcasts
  // every step (parallel/leader_backend.h); the other ranks build rank 0's pool and return their
  // backend for the follower loop. Null: one GPU.
  Communicator* comm = nullptr;
  // With comm: data-parallel attention (--attention dp): every rank sizes its own KV pool and runs
  // its own sequences; rank 0 schedules over every rank's pool (scheduler/rank_kv_pools.h).
  bool data_parallel = false;
};

struct DeviceEngine {
  // The scheduler's pool: a paged pool in device memory, or on rank 0 under data-parallel attention
  // one per rank (RankKvPools; only rank 0's holds memory here).
  std::unique_ptr<KvPool> pool;
  KvCacheManager* own_pool = nullptr;   // this rank's paged pool (inside `pool`): its layout and rows
  std::unique_ptr<Backend> backend;     // uses pool (declared after it, so destroyed first)
  std::unique_ptr<DraftModel> draft;    // with an MTP request; uses backend (destroyed first)
  int64_t kv_bytes = 0;
  std::string description;              // device name, weight and KV memory (one log line)
};

// Builds the engine parts or throws LoadError naming the problem (no device, out of memory, ...).
using DeviceEngineFactory = std::function<DeviceEngine(const DeviceEngineRequest&)>;

}  // namespace ds4::http
