// ds4serve-bench: the offline engine benchmark (no HTTP). Submits N synthetic requests with given
// prompt / output lengths at once to an Engine (CPU backend over the paged KV pool, or, where built
// with CUDA, the CUDA backend over its device KV), and prints prefill and decode tokens/s, step times, batch sizes, time to first token, preemptions
// and KV use. The GPU issues use it with their backend; timings here are measurements, not checks.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>

#include "engine/cpu_backend.h"
#include "engine/kv_geometry.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "scheduler/budget_kv_pool.h"
#include "scheduler/engine.h"
#include "scheduler/paged_kv_pool.h"
#ifdef DS4_BENCH_CUDA
#include "engine/cuda/cuda_backend.h"
#endif

namespace {

using namespace ds4;

constexpr const char* kUsage =
    "usage: ds4serve-bench [--model FILE] [--requests N] [--prompt-len P | --prompt-range MIN:MAX]\n"
    "                      [--output-len O] [--shared-prefix L] [--max-num-seqs S] [--max-batched-tokens T]\n"
    "                      [--chunk C] [--kv-blocks B] [--kv-slots S] [--threads N] [--temperature T] [--seed S]\n"
    "                      [--backend cpu|cuda]\n"
    "  N requests arrive together; prompts are random token ids (the first L shared), outputs ignore EOS.\n"
    "  --kv-blocks  paged pool size in 256-token blocks (default: room for every request at once)\n";

struct BenchOptions {
  std::string model = DS4_DEMO_MODEL_PATH;
  int requests = 16;
  int prompt_min = 128, prompt_max = 128;
  int output_len = 32;
  int shared_prefix = 0;
  int max_num_seqs = 0;  // 0: requests
  int64_t max_batched_tokens = 512;
  int64_t chunk = 0;
  int64_t kv_blocks = 0;
  int kv_slots = 0;  // 0: max_num_seqs
  int threads = 0;
  float temperature = 0.0f;
  uint64_t seed = 1;
  std::string backend = "cpu";
};

long long parse_int(const char* s, const char* what) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s, &end, 10);
  if (end == s || *end || errno || v < 0) throw LoadError(std::string(what) + ": '" + s + "' is not a count");
  return v;
}

BenchOptions parse(int argc, char** argv) {
  BenchOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") { std::fputs(kUsage, stdout); std::exit(0); }
    if (i + 1 >= argc) throw LoadError("option " + a + " needs a value");
    const char* v = argv[++i];
    if (a == "--model" || a == "-m") o.model = v;
    else if (a == "--requests" || a == "-n") o.requests = int(parse_int(v, "--requests"));
    else if (a == "--prompt-len") o.prompt_min = o.prompt_max = int(parse_int(v, "--prompt-len"));
    else if (a == "--prompt-range") {
      const std::string s = v;
      const size_t colon = s.find(':');
      if (colon == std::string::npos) throw LoadError("--prompt-range wants MIN:MAX");
      o.prompt_min = int(parse_int(s.substr(0, colon).c_str(), "--prompt-range"));
      o.prompt_max = int(parse_int(s.substr(colon + 1).c_str(), "--prompt-range"));
    }
    else if (a == "--output-len") o.output_len = int(parse_int(v, "--output-len"));
    else if (a == "--shared-prefix") o.shared_prefix = int(parse_int(v, "--shared-prefix"));
    else if (a == "--max-num-seqs") o.max_num_seqs = int(parse_int(v, "--max-num-seqs"));
    else if (a == "--max-batched-tokens") o.max_batched_tokens = parse_int(v, "--max-batched-tokens");
    else if (a == "--chunk") o.chunk = parse_int(v, "--chunk");
    else if (a == "--kv-blocks") o.kv_blocks = parse_int(v, "--kv-blocks");
    else if (a == "--kv-slots") o.kv_slots = int(parse_int(v, "--kv-slots"));
    else if (a == "--threads") o.threads = int(parse_int(v, "--threads"));
    else if (a == "--temperature") o.temperature = std::strtof(v, nullptr);
    else if (a == "--seed") o.seed = parse_int(v, "--seed");
    else if (a == "--backend") o.backend = v;
    else throw LoadError("unknown option " + a);
  }
  if (o.requests < 1 || o.output_len < 1) throw LoadError("--requests and --output-len must be >= 1");
  if (o.prompt_min < 1 || o.prompt_max < o.prompt_min) throw LoadError("--prompt-range needs 1 <= MIN <= MAX");
  if (o.shared_prefix > o.prompt_min) throw LoadError("--shared-prefix must not exceed the shortest prompt");
  if (o.max_num_seqs == 0) o.max_num_seqs = o.requests;
  if (o.kv_slots == 0) o.kv_slots = o.max_num_seqs;
  if (o.backend != "cpu" && o.backend != "cuda") throw LoadError("--backend must be cpu or cuda");
  return o;
}

std::vector<GenerationRequest> make_requests(const BenchOptions& o, int32_t n_vocab) {
  std::mt19937_64 rng(o.seed);
  const int32_t lo = 100, hi = std::min<int32_t>(n_vocab, 100000);  // ordinary (non-control) ids
  auto token = [&] { return static_cast<int32_t>(lo + rng() % uint64_t(hi - lo)); };
  std::vector<int32_t> shared(o.shared_prefix);
  for (auto& t : shared) t = token();
  std::vector<GenerationRequest> out(o.requests);
  for (int i = 0; i < o.requests; ++i) {
    const int len = o.prompt_min + int(rng() % uint64_t(o.prompt_max - o.prompt_min + 1));
    GenerationRequest& r = out[i];
    r.prompt_tokens = shared;
    while (int(r.prompt_tokens.size()) < len) r.prompt_tokens.push_back(token());
    r.max_tokens = o.output_len;
    r.ignore_eos = true;
    r.sampling.temperature = o.temperature;
    r.sampling.seed = o.seed + i;
  }
  return out;
}

double pct(std::vector<double> v, double q) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(q * double(v.size() - 1) + 0.5))];
}
double mean(const std::vector<double>& v) { return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / v.size(); }
double ms(EngineClock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

void report(const EngineStats& engine, const std::vector<StepStats>& steps, const std::vector<StreamChunk>& finals,
            double wall_s) {
  double prefill_tok = 0, prefill_s = 0, decode_tok = 0, decode_s = 0, forward_s = 0, step_s = 0;
  std::vector<double> step_ms, decode_batch, tokens_per_step;
  int preemptions = 0;
  int64_t peak_blocks = 0;
  for (const StepStats& s : steps) {
    step_ms.push_back(s.step_us / 1e3);
    tokens_per_step.push_back(double(s.num_tokens));
    step_s += s.step_us / 1e6;
    forward_s += s.forward_us / 1e6;
    if (s.prefill_tokens > 0) {
      prefill_tok += double(s.prefill_tokens);
      prefill_s += s.step_us / 1e6;
    } else {
      decode_tok += double(s.decode_tokens);
      decode_s += s.step_us / 1e6;
      decode_batch.push_back(double(s.num_seqs));
    }
    preemptions += s.num_preempted;
    peak_blocks = std::max(peak_blocks, s.kv.used_blocks);
  }
  std::vector<double> ttft_ms, e2e_ms;
  int64_t out_tokens = 0, prompt_tokens = 0, cached = 0;
  for (const StreamChunk& f : finals) {
    ttft_ms.push_back(ms(f.timing.first_token - f.timing.queued));
    e2e_ms.push_back(ms(f.timing.finished - f.timing.queued));
    out_tokens += f.usage.completion_tokens;
    prompt_tokens += f.usage.prompt_tokens;
    cached += f.usage.cached_prompt_tokens;
  }
  const KvUsage kv = steps.empty() ? KvUsage{} : steps.back().kv;
  std::printf("wall %.2f s: %.2f requests/s, %.1f output tok/s, %.1f total tok/s (%lld prompt + %lld output tokens)\n",
              wall_s, finals.size() / wall_s, out_tokens / wall_s, (prompt_tokens + out_tokens) / wall_s,
              (long long)prompt_tokens, (long long)out_tokens);
  std::printf("prefill: %.0f tokens in %.3f s of steps with prefill: %.1f tok/s\n", prefill_tok, prefill_s,
              prefill_s > 0 ? prefill_tok / prefill_s : 0.0);
  std::printf("decode:  %.0f tokens in %.3f s of decode-only steps: %.1f tok/s (batch mean %.1f, max %.0f seqs)\n",
              decode_tok, decode_s, decode_s > 0 ? decode_tok / decode_s : 0.0, mean(decode_batch),
              decode_batch.empty() ? 0.0 : *std::max_element(decode_batch.begin(), decode_batch.end()));
  std::printf("steps %zu: step ms mean %.1f p50 %.1f p90 %.1f max %.1f; tokens/step mean %.1f; forward %.0f%% of step time\n",
              steps.size(), mean(step_ms), pct(step_ms, 0.5), pct(step_ms, 0.9), pct(step_ms, 1.0),
              mean(tokens_per_step), step_s > 0 ? 100.0 * forward_s / step_s : 0.0);
  std::printf("TTFT ms mean %.0f p50 %.0f max %.0f; end-to-end ms mean %.0f max %.0f\n", mean(ttft_ms),
              pct(ttft_ms, 0.5), pct(ttft_ms, 1.0), mean(e2e_ms), pct(e2e_ms, 1.0));
  std::printf("preemptions %d; KV peak %lld of %lld blocks (%lld tokens each)\n", preemptions, (long long)peak_blocks,
              (long long)kv.total_blocks, (long long)kv.block_tokens);
  std::printf("prefix cache: %lld of %lld prompt tokens at first admission; %llu of %llu tokens over all admissions\n",
              (long long)cached, (long long)prompt_tokens, (unsigned long long)engine.prefix_cache_hit_tokens,
              (unsigned long long)engine.prefix_cache_queried_tokens);
}

// The backend and the pool it runs on (the pool is destroyed first: its states may belong to the backend).
struct EngineParts {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<KvPool> pool;
  std::string description;
};

EngineParts make_parts(const BenchOptions& o, const Model& model, int64_t blocks) {
  const ModelConfig& c = model.config;
  EngineParts p;
  if (o.backend == "cpu") {
    auto backend = std::make_unique<CpuBackend>(c, model.weights, ForwardOptions{}, o.threads);
    const KvPoolLayout layout = layout_kv_pool(kv_geometry(c), KvLayout::kF32, blocks, o.kv_slots, blocks);
    p.description = "CPU backend, paged pool " + std::to_string(layout.total_bytes() >> 20) + " MiB";
    p.backend = std::move(backend);
    p.pool = std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layout));
    return p;
  }
#ifdef DS4_BENCH_CUDA
  CudaBackendOptions options;
  options.max_seqs = o.kv_slots;
  options.kv_blocks = blocks;
  auto backend = std::make_unique<CudaBackend>(c, model.weights, options);
  CudaBackend* b = backend.get();
  p.description = "CUDA backend, device KV " + std::to_string(backend->kv_bytes() >> 20) + " MiB (no prefix cache)";
  p.backend = std::move(backend);
  p.pool = std::make_unique<BudgetKvPool>(blocks, cuda::kKvBlockPositions, o.kv_slots, [b] { return b->new_sequence(); });
  return p;
#else
  throw LoadError("this ds4serve-bench was built without CUDA");
#endif
}

int run(const BenchOptions& o) {
  const auto model = load_model(o.model);
  const ModelConfig& c = model->config;
  const int64_t block_tokens = kKvBlockTokens;
  const int64_t per_request_blocks = (o.prompt_max + o.output_len + block_tokens - 1) / block_tokens;
  const int64_t blocks = o.kv_blocks > 0 ? o.kv_blocks : per_request_blocks * o.requests;
  EngineParts parts = make_parts(o, *model, blocks);
  EngineConfig config{.scheduler = {.max_num_seqs = o.max_num_seqs, .max_num_batched_tokens = o.max_batched_tokens,
                                    .max_prefill_chunk_tokens = o.chunk},
                      .context_length = c.context_length, .eos_token_id = -1, .n_vocab = c.n_vocab};
  Engine engine(*parts.backend, *parts.pool, config);
  std::vector<StepStats> steps;  // appended on the engine thread, read after stop()
  engine.set_step_observer([&](const StepStats& s) { steps.push_back(s); });

  std::printf("ds4serve-bench: model %s (%d layers, vocab %d), %s; %d requests x prompt %d..%d (shared %d) "
              "+ output %d; max_num_seqs %d, max_batched_tokens %lld; %lld KV blocks x %lld tokens, %d slots\n",
              c.name.c_str(), c.n_layer, c.n_vocab, parts.description.c_str(), o.requests, o.prompt_min, o.prompt_max,
              o.shared_prefix, o.output_len, o.max_num_seqs, (long long)o.max_batched_tokens, (long long)blocks,
              (long long)block_tokens, o.kv_slots);
  std::vector<GenerationRequest> requests = make_requests(o, c.n_vocab);
  engine.start();
  const auto t0 = EngineClock::now();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (GenerationRequest& r : requests) streams.push_back(engine.submit(std::move(r)));
  std::vector<StreamChunk> finals(streams.size());
  for (size_t i = 0; i < streams.size(); ++i) {
    StreamChunk chunk;
    while (!finals[i].finished()) {
      // Tokens are dropped as they come: only the final usage and timing matter here.
      if (streams[i]->wait_for(chunk, std::chrono::seconds(1))) finals[i] = std::move(chunk);
    }
    if (finals[i].finish_reason != FinishReason::kLength)
      throw LoadError("request " + std::to_string(i) + " ended with " + finish_reason_name(finals[i].finish_reason) +
                      ": " + finals[i].error);
  }
  const double wall_s = std::chrono::duration<double>(EngineClock::now() - t0).count();
  engine.stop();
  report(engine.stats(), steps, finals, wall_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ds4serve-bench: error: %s\n", e.what());
    return 1;
  }
}
