// ModelService: everything the HTTP routes need once the model is loaded: the model and its
// tokenizer, the backend (CPU, or an accelerator through options.device_factory: http/device_engine.h),
// the KV pool and the engine thread, the metrics registry (fed by the
// engine's step observer and refreshed from engine stats at each scrape), and the tool-call replay
// cache. Built by load() at start-up (throws LoadError / invalid_argument naming the problem),
// immutable afterwards except through the thread-safe Engine, ServerMetrics and ToolCallReplay.
// Owned by main; the server reads it through a pointer published once loading is done.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "engine/chat_template.h"
#include "engine/mtp_draft.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "engine/tool_call_replay.h"
#include "http/device_engine.h"
#include "metrics/server_metrics.h"
#include "scheduler/engine.h"
#include "scheduler/speculator.h"

namespace ds4 {
class CpuBackend;
class PagedKvPool;
}  // namespace ds4

namespace ds4::http {

// --mtp synth: the synthetic model's MTP module, generated in device memory beside it.
inline constexpr std::string_view kSynthMtp = "synth";

struct ServiceOptions {
  std::string model_path;
  std::string served_model_name;      // "" -> the GGUF's model name
  int64_t ctx = 0;                    // max prompt + output positions per request; 0: the model's
  int max_num_seqs = 32;
  int max_waiting = 256;              // requests queued beyond max_num_seqs; more are refused (503)
  int64_t max_num_batched_tokens = 2048;
  double kv_memory_gib = 0;           // KV budget (paged pool, prefix cache); 0: room for every sequence at full context
  int cpu_threads = 0;                // 0: all cores
  ReasoningEffort default_effort = ReasoningEffort::kHigh;
  std::string mtp_path;               // "" -> no speculative decoding; "synth" (with synth_preset): generated, seed synth_seed + 1
  int mtp_draft = 3;                  // most drafts per sequence and step
  std::string backend = "cpu";        // "cpu" or "cuda" (needs device_factory)
  // Non-empty: serve the synthetic model of this preset generated in device memory (cuda only;
  // model_path then only supplies the tokenizer); quant scheme and seed as ds4serve-model synth.
  std::string synth_preset;
  std::string synth_quant = "q2";
  uint64_t synth_seed = 1;
  double device_reserve_gib = 6;      // device memory kept free for step scratch (the KV pool gets the rest)
  DeviceEngineFactory device_factory; // set by ds4serve in a CUDA build; empty: --backend cuda fails
};

// The device engine these options ask for: `config`, `weights` (null with --synth: generated on
// the device, scheme and seed from the options), limits, KV budget and snapshot share. Every rank of
// a group builds its request here, so they plan alike; MTP, log and communicator are the caller's.
DeviceEngineRequest device_engine_request(const ServiceOptions& options, const ModelConfig& config, const Weights* weights);

// The scheduler's per-step limits from the options: --max-num-seqs and --max-num-batched-tokens
// are per rank, so with `step_ranks` ranks each running their own sequences (data-parallel
// attention) the step takes that many times as many sequences and tokens (the scheduler splits the
// tokens per rank: KvPool::budget_groups), one sequence's prefill chunk at most one rank's budget.
SchedulerConfig scheduler_limits(const ServiceOptions& options, int step_ranks);

class ModelService {
 public:
  using Log = std::function<void(std::string_view)>;
  // Loads the model, touches its pages with progress reports, builds the engine and starts it.
  static std::unique_ptr<ModelService> load(const ServiceOptions& options, const Log& log);
  ~ModelService();  // stops the engine (unfinished requests end with kAbort)

  const Tokenizer& tokenizer() const { return *tokenizer_; }
  Engine& engine() { return *engine_; }
  ServerMetrics& metrics() { return *metrics_; }
  ToolCallReplay& replay() { return replay_; }
  const ModelConfig& config() const { return config_; }
  const std::string& served_name() const { return served_name_; }
  int64_t max_model_len() const { return engine_->max_model_len(); }
  ReasoningEffort default_effort() const { return options_.default_effort; }
  int64_t created_unix() const { return created_unix_; }
  // A fresh seed for a request that gave none (so unseeded sampled requests differ).
  uint64_t next_seed();
  // Ends the engine loop; every unfinished request finishes with kAbort. Idempotent.
  void stop();

 private:
  ModelService() = default;
  void load_weights(const Log& log);
  void build_engine(const Log& log);
  int64_t build_cpu_backend();                            // returns the KV budget in bytes
  int64_t build_device_backend(const Log& log);           // same
  void build_speculator(EngineConfig& ec, const Log& log);
  void wire_metrics();

  ServiceOptions options_;
  std::unique_ptr<Model> model_;      // with synth_preset: only the tokenizer's file
  ModelConfig config_;                // the served model's
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<KvPool> pool_;  // before backend_: a device backend uses it until destroyed
  std::unique_ptr<Backend> backend_;
  CpuBackend* cpu_backend_ = nullptr;  // backend_ when it is the CPU one (MTP drafting)
  std::unique_ptr<ServerMetrics> metrics_;
  std::unique_ptr<MtpModule> mtp_;               // speculative decoding (null when off)
  std::unique_ptr<DraftModel> draft_;          // CpuMtpDraftModel, or the device's (CudaMtpDraftModel)
  std::unique_ptr<Speculator> speculator_;
  std::unique_ptr<Engine> engine_;
  ToolCallReplay replay_;
  std::string served_name_;
  int64_t created_unix_ = 0;
  std::atomic<uint64_t> seed_state_{0};
};

}  // namespace ds4::http
