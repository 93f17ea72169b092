// ModelService (see model_service.h): start-up of the model, the backend (CPU, or a device
// factory of http/device_engine.h), the engine and metrics, with progress.
#include "http/model_service.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/kv_geometry.h"
#include "engine/load_error.h"
#include "engine/model_layout.h"
#include "engine/tokenizer_tables.h"
#include "scheduler/paged_kv_pool.h"

namespace ds4::http {

namespace {

constexpr double kSnapshotFraction = 0.05;  // of the KV budget kept for prefix-cache resume points

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / double(1ull << 30));
  return buf;
}

// Reads the file once so that its pages are in the page cache before the first request (the
// weights are mmapped; a cold 80 GiB mapping would otherwise be faulted in by the first steps).
void preload_file(const std::string& path, const ModelService::Log& log) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw LoadError("cannot open " + path);
  const off_t size = ::lseek(fd, 0, SEEK_END);
  std::vector<char> buf(size_t{64} << 20);
  off_t done = 0;
  int last_percent = -1;
  const auto t0 = std::chrono::steady_clock::now();
  while (done < size) {
    const ssize_t n = ::pread(fd, buf.data(), buf.size(), done);
    if (n <= 0) break;
    done += n;
    const int percent = static_cast<int>(100.0 * double(done) / double(size));
    if (percent / 10 != last_percent / 10 || done == size) {
      log("reading weights: " + std::to_string(percent) + "% (" + gib(double(done)) + " of " + gib(double(size)) + ")");
      last_percent = percent;
    }
  }
  ::close(fd);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char line[96];
  std::snprintf(line, sizeof line, "weights read in %.1f s", s);
  log(line);
}

// The KV budget: as given, or room for max_num_seqs sequences at full context (f32 rows, what the
// CPU backend reads), plus the share the pool keeps for prefix-cache resume points.
int64_t kv_budget_bytes(const ModelConfig& config, const ServiceOptions& o, int64_t ctx) {
  if (o.kv_memory_gib > 0) return static_cast<int64_t>(o.kv_memory_gib * double(1ull << 30));
  const KvByteSizes sizes = kv_byte_sizes(kv_geometry(config), KvLayout::kF32);
  const int64_t blocks_per_seq = (ctx + sizes.block_tokens - 1) / sizes.block_tokens;
  const double per_seq = double(sizes.slot_bytes) + double(blocks_per_seq) * double(sizes.block_bytes);
  return static_cast<int64_t>(per_seq * double(o.max_num_seqs) / (1.0 - kSnapshotFraction)) + sizes.snapshot_bytes;
}

}  // namespace

std::unique_ptr<ModelService> ModelService::load(const ServiceOptions& options, const Log& log) {
  std::unique_ptr<ModelService> s(new ModelService());
  s->options_ = options;
  s->load_weights(log);
  s->tokenizer_ = std::make_unique<Tokenizer>(tokenizer_tables_from_gguf(*s->model_->file));
  if (s->tokenizer_->vocab_size() != s->config_.n_vocab)
    throw LoadError("the tokenizer of " + options.model_path + " has " + std::to_string(s->tokenizer_->vocab_size()) +
                    " tokens but the model's vocabulary is " + std::to_string(s->config_.n_vocab));
  s->created_unix_ = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
  s->seed_state_ = std::random_device{}() | (uint64_t(std::random_device{}()) << 32);
  s->build_engine(log);
  return s;
}

// The model file (whole, or only for its tokenizer with synth_preset) and the served config.
void ModelService::load_weights(const Log& log) {
  const ServiceOptions& o = options_;
  if (o.backend != "cpu" && o.backend != "cuda")
    throw LoadError("--backend: '" + o.backend + "' is not one of cpu, cuda");
  if (!o.synth_preset.empty()) {
    if (o.backend != "cuda") throw LoadError("--synth generates the weights in GPU memory: it needs --backend cuda");
    if (!quant_scheme_from_name(o.synth_quant))
      throw LoadError("--quant: '" + o.synth_quant + "' is not one of q2, q4, q8_0, f16, f32");
    config_ = preset_by_name(o.synth_preset);
    log("synthetic model '" + o.synth_preset + "' (" + o.synth_quant + ", seed " + std::to_string(o.synth_seed) +
        "); tokenizer from " + o.model_path);
    model_ = load_model(o.model_path);
    served_name_ = o.served_model_name.empty() ? "ds4-synthetic-" + o.synth_preset + "-" + o.synth_quant
                                               : o.served_model_name;
    return;
  }
  log("loading " + o.model_path);
  if (o.backend == "cpu") preload_file(o.model_path, log);  // the device upload reads the file itself
  model_ = load_model(o.model_path);
  config_ = model_->config;
  served_name_ = o.served_model_name.empty() ? config_.name : o.served_model_name;
}

int64_t ModelService::build_cpu_backend() {
  auto cpu = std::make_unique<CpuBackend>(config_, model_->weights, ForwardOptions{}, options_.cpu_threads);
  cpu_backend_ = cpu.get();
  backend_ = std::move(cpu);
  const int64_t ctx =
      options_.ctx > 0 ? std::min<int64_t>(options_.ctx, config_.context_length) : config_.context_length;
  const int64_t budget = kv_budget_bytes(config_, options_, ctx);
  pool_ = make_host_paged_pool(config_, budget, options_.max_num_seqs, kSnapshotFraction);
  return budget;
}

DeviceEngineRequest device_engine_request(const ServiceOptions& o, const ModelConfig& config, const Weights* weights) {
  DeviceEngineRequest r;
  r.config = &config;
  r.weights = weights;
  r.synth_scheme = quant_scheme_from_name(o.synth_quant).value_or(QuantScheme::kQ2);
  r.synth_seed = o.synth_seed;
  r.synth_threads = o.cpu_threads;
  r.max_num_seqs = o.max_num_seqs;
  r.kv_memory_gib = o.kv_memory_gib;
  r.reserve_gib = o.device_reserve_gib;
  r.snapshot_fraction = kSnapshotFraction;
  return r;
}

int64_t ModelService::build_device_backend(const Log& log) {
  if (!options_.device_factory)
    throw LoadError("--backend cuda: this ds4serve was built without CUDA (no nvcc at build time); use --backend cpu");
  DeviceEngineRequest r =
      device_engine_request(options_, config_, options_.synth_preset.empty() ? &model_->weights : nullptr);
  r.log = log;
  if (options_.mtp_path == kSynthMtp) {  // the MTP module of the synthetic model, generated beside it
    r.mtp_synth = true;
    r.mtp_synth_seed = options_.synth_seed + 1;
  } else if (!options_.mtp_path.empty()) {
    log("loading MTP draft module " + options_.mtp_path);
    mtp_ = load_mtp(options_.mtp_path, config_);
    r.mtp = &mtp_->weights;
  }
  DeviceEngine e = options_.device_factory(r);
  log(e.description);
  pool_ = std::move(e.pool);
  backend_ = std::move(e.backend);
  draft_ = std::move(e.draft);
  return e.kv_bytes;
}

void ModelService::build_speculator(EngineConfig& ec, const Log& log) {
  if (options_.mtp_path.empty()) return;
  if (cpu_backend_) {
    log("loading MTP draft module " + options_.mtp_path);
    mtp_ = load_mtp(options_.mtp_path, config_);
    draft_ = std::make_unique<CpuMtpDraftModel>(*cpu_backend_, config_, mtp_->weights);
  }
  if (!draft_) throw LoadError("--mtp: the " + options_.backend + " backend made no MTP draft model");
  SpeculativeConfig sc;
  sc.max_draft = options_.mtp_draft;
  speculator_ = std::make_unique<Speculator>(sc, *backend_, draft_.get(), config_.n_vocab, ec.eos_token_id);
}

SchedulerConfig scheduler_limits(const ServiceOptions& options, int step_ranks) {
  SchedulerConfig s;
  s.max_num_seqs = options.max_num_seqs * step_ranks;
  s.max_num_batched_tokens = options.max_num_batched_tokens * step_ranks;
  if (step_ranks > 1) s.max_prefill_chunk_tokens = options.max_num_batched_tokens;
  return s;
}

void ModelService::build_engine(const Log& log) {
  const ModelConfig& config = config_;
  const int64_t budget = options_.backend == "cuda" ? build_device_backend(log) : build_cpu_backend();
  const int64_t ctx = options_.ctx > 0 ? std::min<int64_t>(options_.ctx, config.context_length) : config.context_length;
  const KvUsage kv = pool_->usage();
  EngineConfig ec;
  ec.scheduler = scheduler_limits(options_, pool_->budget_groups());  // ranks computing their own sequences
  ec.scheduler.max_model_len = ctx;
  ec.context_length = config.context_length;
  ec.eos_token_id = tokenizer_->chat_ids().eos;
  ec.n_vocab = config.n_vocab;
  // The bounded queue (--max-waiting): more unfinished requests than this are refused with 503.
  ec.max_queued_requests = static_cast<size_t>(ec.scheduler.max_num_seqs) + static_cast<size_t>(options_.max_waiting);
  build_speculator(ec, log);
  engine_ = std::make_unique<Engine>(*backend_, *pool_, ec, speculator_.get());
  MetricsConfig mc;
  mc.model_name = served_name_;
  mc.max_model_len = engine_->max_model_len();
  mc.kv_block_size_tokens = kv.block_tokens;
  mc.kv_num_blocks = kv.total_blocks;
  mc.prefix_caching = true;
  metrics_ = std::make_unique<ServerMetrics>(mc);
  wire_metrics();
  engine_->start();
  log("KV pool: " + gib(double(budget)) + ", " + std::to_string(kv.total_blocks) + " blocks of " +
      std::to_string(kv.block_tokens) + " positions with prefix caching, max " + std::to_string(ec.scheduler.max_num_seqs) +
      " sequences, context " + std::to_string(engine_->max_model_len()) + " tokens");
}

void ModelService::wire_metrics() {
  ServerMetrics* m = metrics_.get();
  engine_->set_step_observer([m](const StepStats& s) {
    StepSample sample;
    sample.step_seconds = s.step_us * 1e-6;
    sample.num_sequences = s.num_seqs;
    sample.num_tokens = s.num_tokens;
    sample.generated_tokens = s.num_sampled;
    sample.unique_experts = s.unique_experts;
    sample.weight_bytes_read = s.weight_bytes_read;
    sample.launch = s.launch == StepLaunch::kGraphReplay    ? "graph_replay"
                    : s.launch == StepLaunch::kGraphCapture ? "graph_capture"
                                                            : "direct";
    sample.spec_drafts = s.spec_drafts;
    sample.spec_draft_tokens = s.spec_draft_tokens;
    sample.spec_accepted_tokens = s.spec_accepted_tokens;
    sample.spec_accepted_per_position = s.spec_accepted_per_position;
    m->record_step(sample);
  });
  Engine* e = engine_.get();
  m->set_collect_hook([m, e] {
    const EngineStats st = e->stats();
    EngineGauges g;
    g.requests_running = st.num_running;
    g.requests_waiting = st.num_waiting;
    g.kv_usage_fraction = st.kv.used_fraction();
    g.kv_blocks_used = st.kv.used_blocks;
    g.kv_blocks_cached = st.kv.cached_blocks;
    g.kv_blocks_free = std::max<int64_t>(st.kv.total_blocks - st.kv.used_blocks - st.kv.cached_blocks, 0);
    g.preemptions_total = static_cast<int64_t>(st.preemptions);
    g.prefix_cache_queries_total = static_cast<int64_t>(st.prefix_cache_queried_tokens);
    g.prefix_cache_hits_total = static_cast<int64_t>(st.prefix_cache_hit_tokens);
    m->set_engine_gauges(g);
  });
}

uint64_t ModelService::next_seed() {
  // splitmix64 over an atomic counter: distinct, well-mixed seeds without a lock.
  uint64_t z = seed_state_.fetch_add(0x9e3779b97f4a7c15ull) + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void ModelService::stop() {
  if (engine_) engine_->stop();
}

ModelService::~ModelService() { stop(); }

}  // namespace ds4::http
