// ds4serve-bench's model and engine parts: the model (a GGUF file, or with --synth only the preset's
// config: the weights are generated in GPU memory), and the backend with its KV pool:
//   * CPU: CpuBackend over a paged host pool of --kv-blocks;
//   * CUDA, all-at-once mode from a file: CudaBackend with its own device KV (BudgetKvPool, no prefix cache);
//   * CUDA with --synth or the closed loop: ds4serve's own CUDA engine (http/cuda/cuda_engine_factory.h:
//     weights uploaded or synthesized, the paged pool with prefix caching sized from free device memory),
//     so the engine-only numbers come from the same engine as the server's.
// Start-up only; failures throw LoadError.
#pragma once
#include <memory>
#include <string>

#include "engine/draft_model.h"
#include "engine/forward.h"
#include "engine/model.h"
#include "engine/mtp_draft.h"
#include "scheduler/kv_pool.h"
#include "scheduler/tools/bench_options.h"

namespace ds4 {

struct BenchModel {
  std::unique_ptr<Model> file;  // the loaded GGUF (null with --synth)
  ModelConfig config;
  const Weights* host_weights() const { return file ? &file->weights : nullptr; }
  std::string name() const;     // for the banner and the reports
};

// The GGUF of --model, or the config of --synth PRESET (no file is read).
BenchModel load_bench_model(const BenchOptions& o);

// Member order is destruction order in reverse: the draft model and the bench's own pool (whose
// states may belong to the backend) go before the backend, the server engine's pool after it.
struct EngineParts {
  std::unique_ptr<KvPool> device_engine_pool;  // ds4serve's CUDA engine: the backend uses it
  std::unique_ptr<Backend> backend;
  std::unique_ptr<KvPool> own_pool;            // CPU paged pool or the CUDA backend's BudgetKvPool
  std::unique_ptr<DraftModel> draft;           // the MTP draft model built with the engine, if any
  std::string description;
  KvPool& pool() { return device_engine_pool ? *device_engine_pool : *own_pool; }
};

// Whether `o` runs on ds4serve's CUDA engine (--backend cuda with --synth or --users).
bool uses_device_engine(const BenchOptions& o);

// The parts for `o`: blocks sizes the CPU pool and the CUDA backend's own KV (unused by the device
// engine); mtp (may be null) is uploaded or used by the device engine's draft model.
EngineParts make_engine_parts(const BenchOptions& o, const BenchModel& model, int64_t blocks, const MtpModule* mtp);

// The MTP draft model on the parts' backend (CPU, or the GPU's CudaMtpDraftModel), unless the
// device engine already built one.
std::unique_ptr<DraftModel> make_draft_model(Backend& backend, const ModelConfig& c, const MtpWeights& mtp);

}  // namespace ds4
