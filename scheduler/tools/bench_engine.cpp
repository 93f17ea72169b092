// ds4serve-bench's model and engine parts (see bench_engine.h).
#include "scheduler/tools/bench_engine.h"

#include <cstdio>

#include "engine/cpu_backend.h"
#include "engine/kv_geometry.h"
#include "engine/load_error.h"
#include "engine/model_layout.h"
#include "scheduler/budget_kv_pool.h"
#include "scheduler/paged_kv_pool.h"
#ifdef DS4_BENCH_CUDA
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_mtp.h"
#include "http/cuda/cuda_engine_factory.h"
#endif

namespace ds4 {

std::string BenchModel::name() const {
  return file ? config.name : "synthetic " + config.name;
}

BenchModel load_bench_model(const BenchOptions& o) {
  BenchModel m;
  if (o.synth_preset.empty()) {
    m.file = load_model(o.model);
    m.config = m.file->config;
    return m;
  }
#ifndef DS4_BENCH_CUDA
  throw LoadError("--synth generates the weights in GPU memory: this ds4serve-bench was built without CUDA");
#endif
  m.config = preset_by_name(o.synth_preset);  // throws LoadError naming an unknown preset
  return m;
}

bool uses_device_engine(const BenchOptions& o) {
  return o.backend == "cuda" && (!o.synth_preset.empty() || o.closed_loop());
}

namespace {

EngineParts cpu_parts(const BenchOptions& o, const BenchModel& model, int64_t blocks) {
  if (!model.file) throw LoadError("the CPU backend needs the model's weights: give --model FILE, not --synth");
  const ModelConfig& c = model.config;
  EngineParts p;
  p.backend = std::make_unique<CpuBackend>(c, model.file->weights, ForwardOptions{}, o.threads);
  const KvPoolLayout layout = layout_kv_pool(kv_geometry(c), KvLayout::kF32, blocks, o.kv_slots, blocks);
  p.description = "CPU backend, paged pool " + std::to_string(layout.total_bytes() >> 20) + " MiB";
  p.own_pool = std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layout));
  return p;
}

#ifdef DS4_BENCH_CUDA
// The CUDA backend with its own device KV (the all-at-once mode over a file, as before).
EngineParts cuda_own_kv_parts(const BenchOptions& o, const BenchModel& model, int64_t blocks) {
  CudaBackendOptions options;
  options.max_seqs = o.kv_slots;
  options.kv_blocks = blocks;
  auto backend = std::make_unique<CudaBackend>(model.config, model.file->weights, options);
  CudaBackend* b = backend.get();
  EngineParts p;
  p.description = "CUDA backend, device KV " + std::to_string(backend->kv_bytes() >> 20) + " MiB (no prefix cache)";
  p.backend = std::move(backend);
  p.own_pool = std::make_unique<BudgetKvPool>(blocks, cuda::kKvBlockPositions, o.kv_slots, [b] { return b->new_sequence(); });
  return p;
}

// ds4serve's CUDA engine, asked for exactly as ModelService::build_device_backend asks for it.
EngineParts device_engine_parts(const BenchOptions& o, const BenchModel& model, const MtpModule* mtp) {
  http::DeviceEngineRequest r;
  r.config = &model.config;
  r.weights = model.host_weights();  // null with --synth: generated on the GPU
  r.synth_scheme = quant_scheme_from_name(o.synth_quant).value_or(QuantScheme::kQ2);
  r.synth_seed = o.seed;
  r.synth_threads = o.threads;
  r.max_num_seqs = o.max_num_seqs;
  r.kv_memory_gib = o.kv_memory_gib;
  r.reserve_gib = o.device_reserve_gib;
  r.mtp = mtp ? &mtp->weights : nullptr;
  r.log = [](std::string_view line) { std::printf("ds4serve-bench: %.*s\n", int(line.size()), line.data()); };
  http::DeviceEngine e = http::make_cuda_engine(r);
  EngineParts p;
  p.description = "ds4serve's CUDA engine: " + e.description;
  p.device_engine_pool = std::move(e.pool);
  p.backend = std::move(e.backend);
  p.draft = std::move(e.draft);
  return p;
}
#endif

}  // namespace

EngineParts make_engine_parts(const BenchOptions& o, const BenchModel& model, int64_t blocks, const MtpModule* mtp) {
  if (o.backend == "cpu") return cpu_parts(o, model, blocks);
#ifdef DS4_BENCH_CUDA
  if (uses_device_engine(o)) return device_engine_parts(o, model, mtp);
  return cuda_own_kv_parts(o, model, blocks);
#else
  throw LoadError("--backend cuda: this ds4serve-bench was built without CUDA");
#endif
}

std::unique_ptr<DraftModel> make_draft_model(Backend& backend, const ModelConfig& c, const MtpWeights& mtp) {
  if (auto* cpu = dynamic_cast<CpuBackend*>(&backend)) return std::make_unique<CpuMtpDraftModel>(*cpu, c, mtp);
#ifdef DS4_BENCH_CUDA
  if (auto* gpu = dynamic_cast<CudaBackend*>(&backend))
    return std::make_unique<CudaMtpDraftModel>(*gpu, c, DeviceMtpWeights::upload(mtp));
#endif
  throw LoadError("--mtp: this backend has no MTP draft model");
}

}  // namespace ds4
