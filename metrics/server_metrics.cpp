// ServerMetrics: family definitions (names, help, types, buckets) and recording. The vLLM
// families' buckets are vLLM's (v1 PrometheusStatLogger); counters carry the _total suffix in
// their registered name because prometheus-cpp does not append it. One name differs from vLLM's:
// the histogram vllm:iteration_tokens_total is ds4serve_iteration_tokens, because promtool's lint
// (a CI check) rejects _total on a non-counter. See server_metrics.h.
#include "metrics/server_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <sstream>
#include <string_view>

namespace ds4 {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Labels;

namespace {

const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                          1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
const std::vector<double> kTokenLatencyBuckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                                                  0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const std::vector<double> kRequestLatencyBuckets = {0.3,  0.5,  0.8,  1.0,   1.5,   2.0,   2.5,
                                                    5.0,  10.0, 15.0, 20.0,  30.0,  40.0,  50.0,
                                                    60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
const std::vector<double> kIterationTokenBuckets = {1,   8,    16,   32,   64,   128,  256,
                                                   512, 1024, 2048, 4096, 8192, 16384};
const std::vector<double> kParamsNBuckets = {1, 2, 5, 10, 20};
// Ours: engine step wall time (a CPU step of the demo model is ~25 ms; a GPU step ~10-100 ms).
const std::vector<double> kStepSecondsBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,    0.25,  0.5,    1.0,   2.5,   5.0,   10.0};
const std::vector<double> kBatchSizeBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
const std::vector<double> kHttpSecondsBuckets = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
                                                 5.0,   10.0,  30.0, 60.0, 300.0, 1800.0};

}  // namespace

std::vector<double> buckets_1_2_5(int64_t max_value) {
  std::vector<double> out;
  for (int64_t decade = 1; decade > 0 && decade <= max_value; decade *= 10) {
    for (int64_t m : {1, 2, 5}) {
      if (m * decade > max_value) return out;
      out.push_back(static_cast<double>(m * decade));
    }
  }
  return out;
}

// Every family, and the fixed-label series of the ones recorded on the hot paths.
struct ServerMetrics::Families {
  Labels base;  // {model_name}
  // vLLM gauges.
  Gauge* requests_running;
  Gauge* requests_waiting;
  Gauge* kv_usage;
  // vLLM counters.
  Counter* prefix_queries;
  Counter* prefix_hits;
  Counter* preemptions;
  Counter* prompt_tokens;
  Counter* generation_tokens;
  Family<Counter>* request_success;
  Counter* spec_drafts;
  Counter* spec_draft_tokens;
  Counter* spec_accepted;
  Family<Counter>* spec_accepted_per_pos;
  // vLLM histograms.
  Histogram* request_prompt_tokens;
  Histogram* request_generation_tokens;
  Histogram* request_max_generation_tokens;
  Histogram* request_params_max_tokens;
  Histogram* request_params_n;
  Histogram* iteration_tokens;
  Histogram* ttft;
  Histogram* itl;
  Histogram* tpot;
  Histogram* e2e;
  Histogram* queue;
  Histogram* inference;
  Histogram* prefill;
  Histogram* decode;
  // Ours.
  Histogram* step_seconds;
  Histogram* batch_size;
  Histogram* unique_experts;
  Histogram* bytes_per_token;
  Counter* weight_bytes;
  Counter* engine_steps;
  Gauge* kv_blocks_used;
  Gauge* kv_blocks_cached;
  Gauge* kv_blocks_free;
  std::map<std::string, Counter*, std::less<>> step_launches;  // by launch kind (StepSample::launch)
  Family<Counter>* http_requests;
  Family<Histogram>* http_seconds;
};

namespace {

Counter& counter(prometheus::Registry& r, const std::string& name, const std::string& help, const Labels& l) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r).Add(l);
}
Gauge& gauge(prometheus::Registry& r, const std::string& name, const std::string& help, const Labels& l) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r).Add(l);
}
Histogram& histogram(prometheus::Registry& r, const std::string& name, const std::string& help, const Labels& l,
                     const std::vector<double>& buckets) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add(l, buckets);
}

// vLLM's gauges and counters (same meaning, ds4serve_ prefix).
void register_vllm_scalars(prometheus::Registry& r, const MetricsConfig& config, ServerMetrics::Families& f) {
  const Labels& b = f.base;
  const std::string p = "ds4serve_";

  f.requests_running = &gauge(r, p + "num_requests_running", "Number of requests in model execution batches.", b);
  f.requests_waiting = &gauge(r, p + "num_requests_waiting", "Number of requests waiting to be processed.", b);
  f.kv_usage = &gauge(r, p + "kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", b);
  Labels info = b;
  info["block_size"] = std::to_string(config.kv_block_size_tokens);
  info["num_gpu_blocks"] = std::to_string(config.kv_num_blocks);
  info["enable_prefix_caching"] = config.prefix_caching ? "True" : "False";
  gauge(r, p + "cache_config_info", "Information of the KV cache config.", info).Set(1);

  f.prefix_queries = &counter(r, p + "prefix_cache_queries_total",
                              "Prefix cache queries, in terms of number of queried tokens.", b);
  f.prefix_hits = &counter(r, p + "prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", b);
  f.preemptions = &counter(r, p + "num_preemptions_total", "Cumulative number of preemptions from the engine.", b);
  f.prompt_tokens = &counter(r, p + "prompt_tokens_total", "Number of prefill tokens processed.", b);
  f.generation_tokens = &counter(r, p + "generation_tokens_total", "Number of generation tokens processed.", b);
  f.request_success = &prometheus::BuildCounter()
                           .Name(p + "request_success_total")
                           .Help("Count of successfully processed requests.")
                           .Register(r);
  for (const char* reason : {"stop", "length", "abort", "tool_calls"}) {
    Labels l = b;
    l["finished_reason"] = reason;
    f.request_success->Add(l);  // present from the start so rate() sees the first increment
  }
  f.spec_drafts = &counter(r, p + "spec_decode_num_drafts_total", "Number of spec decoding drafts.", b);
  f.spec_draft_tokens = &counter(r, p + "spec_decode_num_draft_tokens_total", "Number of draft tokens.", b);
  f.spec_accepted = &counter(r, p + "spec_decode_num_accepted_tokens_total", "Number of accepted tokens.", b);
  f.spec_accepted_per_pos = &prometheus::BuildCounter()
                                 .Name(p + "spec_decode_num_accepted_tokens_per_pos_total")
                                 .Help("Accepted tokens per draft position.")
                                 .Register(r);
}

// vLLM's histograms, with vLLM's buckets.
void register_vllm_histograms(prometheus::Registry& r, const MetricsConfig& config, ServerMetrics::Families& f) {
  const Labels& b = f.base;
  const std::string p = "ds4serve_";
  const std::vector<double> tokens_125 = buckets_1_2_5(std::max<int64_t>(config.max_model_len, 1));
  f.request_prompt_tokens = &histogram(r, p + "request_prompt_tokens", "Number of prefill tokens processed.", b, tokens_125);
  f.request_generation_tokens =
      &histogram(r, p + "request_generation_tokens", "Number of generation tokens processed.", b, tokens_125);
  f.request_max_generation_tokens = &histogram(r, p + "request_max_num_generation_tokens",
                                               "Histogram of maximum number of requested generation tokens.", b, tokens_125);
  f.request_params_max_tokens =
      &histogram(r, p + "request_params_max_tokens", "Histogram of the max_tokens request parameter.", b, tokens_125);
  f.request_params_n = &histogram(r, p + "request_params_n", "Histogram of the n request parameter.", b, kParamsNBuckets);
  f.iteration_tokens =
      &histogram(r, p + "iteration_tokens", "Histogram of number of tokens per engine step.", b, kIterationTokenBuckets);
  f.ttft = &histogram(r, p + "time_to_first_token_seconds", "Histogram of time to first token in seconds.", b, kTtftBuckets);
  f.itl = &histogram(r, p + "inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", b,
                     kTokenLatencyBuckets);
  f.tpot = &histogram(r, p + "request_time_per_output_token_seconds",
                      "Histogram of time_per_output_token_seconds per request.", b, kTokenLatencyBuckets);
  f.e2e = &histogram(r, p + "e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", b,
                     kRequestLatencyBuckets);
  f.queue = &histogram(r, p + "request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", b,
                       kRequestLatencyBuckets);
  f.inference = &histogram(r, p + "request_inference_time_seconds",
                           "Histogram of time spent in RUNNING phase for request.", b, kRequestLatencyBuckets);
  f.prefill = &histogram(r, p + "request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.",
                         b, kRequestLatencyBuckets);
  f.decode = &histogram(r, p + "request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", b,
                        kRequestLatencyBuckets);
}

// Ours: engine steps, experts, weight traffic, KV blocks, HTTP.
void register_own(prometheus::Registry& r, ServerMetrics::Families& f) {
  const Labels& b = f.base;
  const std::string p = "ds4serve_";
  f.step_seconds = &histogram(r, p + "engine_step_seconds", "Wall time of one engine step (schedule, forward, sample).",
                              b, kStepSecondsBuckets);
  f.batch_size = &histogram(r, p + "engine_batch_size", "Sequences in one engine step's forward batch.", b,
                            kBatchSizeBuckets);
  f.unique_experts = &histogram(r, p + "engine_unique_experts_per_step",
                                "Routed experts read in one engine step, summed over layers (each read once).", b,
                                buckets_1_2_5(100000));
  f.bytes_per_token = &histogram(r, p + "engine_weight_bytes_per_generated_token",
                                 "Weight bytes read by a step divided by the tokens it generated.", b,
                                 buckets_1_2_5(1000000000000));
  f.weight_bytes = &counter(r, p + "engine_weight_bytes_read_total", "Weight bytes read by forward passes.", b);
  f.engine_steps = &counter(r, p + "engine_steps_total", "Engine steps run.", b);
  auto& launches = prometheus::BuildCounter()
                       .Name(p + "engine_step_launches_total")
                       .Help("Engine steps by how the forward pass's kernels ran: direct (one by one), graph_replay "
                             "(a cached CUDA graph), graph_capture (a new graph captured and instantiated).")
                       .Register(r);
  for (const char* kind : {"direct", "graph_replay", "graph_capture"}) {
    Labels l = b;
    l["launch"] = kind;
    f.step_launches[kind] = &launches.Add(l);
  }
  auto& blocks = prometheus::BuildGauge()
                     .Name(p + "kv_blocks")
                     .Help("KV-cache blocks by state: used (held by sequences), cached (reusable prefix), free.")
                     .Register(r);
  auto block_labels = [&](const char* state) {
    Labels l = b;
    l["state"] = state;
    return l;
  };
  f.kv_blocks_used = &blocks.Add(block_labels("used"));
  f.kv_blocks_cached = &blocks.Add(block_labels("cached"));
  f.kv_blocks_free = &blocks.Add(block_labels("free"));
  f.http_requests = &prometheus::BuildCounter()
                         .Name(p + "http_requests_total")
                         .Help("HTTP requests answered, by route and status code.")
                         .Register(r);
  f.http_seconds = &prometheus::BuildHistogram()
                        .Name(p + "http_request_duration_seconds")
                        .Help("HTTP request duration (until the last byte of the response), by route.")
                        .Register(r);
}

}  // namespace

ServerMetrics::ServerMetrics(const MetricsConfig& config)
    : config_(config), registry_(std::make_shared<prometheus::Registry>()), f_(std::make_unique<Families>()) {
  f_->base = {{"model_name", config.model_name}};
  register_vllm_scalars(*registry_, config, *f_);
  register_vllm_histograms(*registry_, config, *f_);
  register_own(*registry_, *f_);
}

ServerMetrics::~ServerMetrics() = default;

void ServerMetrics::record_step(const StepSample& s) {
  Families& f = *f_;
  f.engine_steps->Increment();
  if (auto it = f.step_launches.find(std::string_view(s.launch)); it != f.step_launches.end()) it->second->Increment();
  f.step_seconds->Observe(s.step_seconds);
  if (s.num_sequences > 0) f.batch_size->Observe(static_cast<double>(s.num_sequences));
  if (s.num_tokens > 0) f.iteration_tokens->Observe(static_cast<double>(s.num_tokens));
  if (s.unique_experts > 0) f.unique_experts->Observe(static_cast<double>(s.unique_experts));
  if (s.weight_bytes_read > 0) {
    f.weight_bytes->Increment(static_cast<double>(s.weight_bytes_read));
    if (s.generated_tokens > 0)
      f.bytes_per_token->Observe(static_cast<double>(s.weight_bytes_read) / static_cast<double>(s.generated_tokens));
  }
  if (s.spec_drafts > 0) f.spec_drafts->Increment(static_cast<double>(s.spec_drafts));
  if (s.spec_draft_tokens > 0) f.spec_draft_tokens->Increment(static_cast<double>(s.spec_draft_tokens));
  if (s.spec_accepted_tokens > 0) f.spec_accepted->Increment(static_cast<double>(s.spec_accepted_tokens));
  for (size_t pos = 0; pos < s.spec_accepted_per_position.size(); ++pos) {
    Labels l = f.base;
    l["position"] = std::to_string(pos);
    f.spec_accepted_per_pos->Add(l).Increment(static_cast<double>(s.spec_accepted_per_position[pos]));
  }
}

void ServerMetrics::set_engine_gauges(const EngineGauges& g) {
  Families& f = *f_;
  f.requests_running->Set(static_cast<double>(g.requests_running));
  f.requests_waiting->Set(static_cast<double>(g.requests_waiting));
  f.kv_usage->Set(g.kv_usage_fraction);
  f.kv_blocks_used->Set(static_cast<double>(g.kv_blocks_used));
  f.kv_blocks_cached->Set(static_cast<double>(g.kv_blocks_cached));
  f.kv_blocks_free->Set(static_cast<double>(g.kv_blocks_free));
  std::lock_guard lock(gauges_mutex_);
  auto advance = [](Counter* c, int64_t now, int64_t& last) {
    if (now > last) c->Increment(static_cast<double>(now - last));
    last = std::max(last, now);
  };
  advance(f.preemptions, g.preemptions_total, last_gauges_.preemptions_total);
  advance(f.prefix_queries, g.prefix_cache_queries_total, last_gauges_.prefix_cache_queries_total);
  advance(f.prefix_hits, g.prefix_cache_hits_total, last_gauges_.prefix_cache_hits_total);
}

void ServerMetrics::record_first_token(double ttft_seconds, int64_t prompt_tokens) {
  f_->ttft->Observe(ttft_seconds);
  f_->prompt_tokens->Increment(static_cast<double>(prompt_tokens));
}

void ServerMetrics::record_generated(int64_t n, const double* gaps_seconds, size_t num_gaps) {
  if (n > 0) f_->generation_tokens->Increment(static_cast<double>(n));
  for (size_t i = 0; i < num_gaps; ++i) f_->itl->Observe(gaps_seconds[i]);
}

void ServerMetrics::record_finished(const FinishedRequest& r) {
  Families& f = *f_;
  Labels l = f.base;
  l["finished_reason"] = r.finished_reason;
  f.request_success->Add(l).Increment();
  f.request_prompt_tokens->Observe(static_cast<double>(r.prompt_tokens));
  f.request_generation_tokens->Observe(static_cast<double>(r.generation_tokens));
  f.request_max_generation_tokens->Observe(static_cast<double>(r.generation_tokens));
  if (r.max_tokens_param > 0) f.request_params_max_tokens->Observe(static_cast<double>(r.max_tokens_param));
  f.request_params_n->Observe(static_cast<double>(r.n));
  f.e2e->Observe(r.e2e_seconds);
  if (r.queue_seconds >= 0) f.queue->Observe(r.queue_seconds);
  if (r.prefill_seconds >= 0) f.prefill->Observe(r.prefill_seconds);
  if (r.decode_seconds >= 0) f.decode->Observe(r.decode_seconds);
  if (r.inference_seconds >= 0) f.inference->Observe(r.inference_seconds);
  if (r.generation_tokens > 1 && r.decode_seconds >= 0)
    f.tpot->Observe(r.decode_seconds / static_cast<double>(r.generation_tokens - 1));
}

Counter& ServerMetrics::http_counter(std::string_view route, int status) {
  std::lock_guard lock(http_mutex_);
  auto key = std::make_pair(std::string(route), status);
  auto it = http_counters_.find(key);
  if (it != http_counters_.end()) return *it->second;
  Labels l = f_->base;
  l["route"] = key.first;
  l["status"] = std::to_string(status);
  Counter* c = &f_->http_requests->Add(l);
  http_counters_.emplace(std::move(key), c);
  return *c;
}

Histogram& ServerMetrics::http_duration(std::string_view route) {
  std::lock_guard lock(http_mutex_);
  auto it = http_durations_.find(route);
  if (it != http_durations_.end()) return *it->second;
  Labels l = f_->base;
  l["route"] = std::string(route);
  Histogram* h = &f_->http_seconds->Add(l, kHttpSecondsBuckets);
  http_durations_.emplace(std::string(route), h);
  return *h;
}

void ServerMetrics::record_http(std::string_view route, int status, double seconds) {
  http_counter(route, status).Increment();
  http_duration(route).Observe(seconds);
}

void ServerMetrics::set_collect_hook(std::function<void()> hook) {
  std::lock_guard lock(hook_mutex_);
  hook_ = std::move(hook);
}

std::string ServerMetrics::serialize() {
  {
    std::lock_guard lock(hook_mutex_);
    if (hook_) hook_();
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace ds4
