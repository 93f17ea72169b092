// ds4serve-bench: the offline engine benchmark (no HTTP). Submits N synthetic requests with given
// prompt / output lengths at once to an Engine (CPU backend over the paged KV pool, or, where built
// with CUDA, the CUDA backend over its device KV), and prints prefill and decode tokens/s, step times, batch sizes, time to first token, preemptions
// and KV use. The GPU issues use it with their backend; timings here are measurements, not checks.
// Speculative decoding (CPU or CUDA backend): --mtp FILE drafts with the MTP module, --mtp-draft K drafts per
// sequence and step at most; --mtp-oracle RATE first runs without speculation to learn each
// request's tokens, then forces drafts to them at that rate (speed against acceptance).
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <random>
#include <string>

#include <sys/resource.h>

#include "engine/cpu_backend.h"
#include "engine/kv_geometry.h"
#include "engine/model.h"
#include "engine/mtp_draft.h"
#include "engine/tokenizer.h"
#include "scheduler/budget_kv_pool.h"
#include "scheduler/engine.h"
#include "scheduler/paged_kv_pool.h"
#include "scheduler/speculator.h"
#ifdef DS4_BENCH_CUDA
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_mtp.h"
#endif

namespace {

using namespace ds4;

constexpr const char* kUsage =
    "usage: ds4serve-bench [--model FILE] [--requests N] [--prompt-len P | --prompt-range MIN:MAX]\n"
    "                      [--output-len O] [--shared-prefix L] [--max-num-seqs S] [--max-batched-tokens T]\n"
    "                      [--chunk C] [--kv-blocks B] [--kv-slots S] [--threads N] [--temperature T] [--seed S]\n"
    "                      [--backend cpu|cuda] [--mtp FILE] [--mtp-draft K] [--mtp-oracle RATE]\n"
    "                      [--mtp-policy adaptive|fixed] [--mtp-pairing next|same]\n"
    "  N requests arrive together; prompts are random token ids (the first L shared), outputs ignore EOS.\n"
    "  --kv-blocks  paged pool size in 256-token blocks (default: room for every request at once)\n"
    "  --mtp FILE   speculative decoding with this MTP draft module (CPU or CUDA backend); --mtp-draft K (default 3)\n"
    "  --mtp-oracle RATE  (greedy) a first pass without speculation records every request's tokens; the\n"
    "               measured pass forces each draft to the right token with probability RATE (with --mtp the\n"
    "               MTP still runs, for its cost; without it drafts are free). Prints both passes.\n"
    "  --mtp-policy adaptive: K per step from batch size and measured acceptance (default); fixed: always K\n"
    "  --mtp-pairing next: state i with token i+1 (paper, default); same: state i with token i (ds4)\n";

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
  std::string mtp;          // MTP GGUF ("" : none)
  int mtp_draft = 3;
  double mtp_oracle = -1;   // < 0: no oracle
  bool mtp_adaptive = true;
  MtpPairing mtp_pairing = MtpPairing::kNextToken;
  bool speculative() const { return !mtp.empty() || mtp_oracle >= 0; }
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
    else if (a == "--mtp") o.mtp = v;
    else if (a == "--mtp-draft") o.mtp_draft = int(parse_int(v, "--mtp-draft"));
    else if (a == "--mtp-oracle") {
      char* end = nullptr;
      o.mtp_oracle = std::strtod(v, &end);
      if (end == v || *end || !(o.mtp_oracle >= 0.0 && o.mtp_oracle <= 1.0)) throw LoadError("--mtp-oracle wants a rate in [0, 1]");
    }
    else if (a == "--mtp-policy") {
      if (std::string(v) != "adaptive" && std::string(v) != "fixed") throw LoadError("--mtp-policy must be adaptive or fixed");
      o.mtp_adaptive = std::string(v) == "adaptive";
    }
    else if (a == "--mtp-pairing") {
      if (!parse_pairing(v, o.mtp_pairing)) throw LoadError("--mtp-pairing must be next or same");
    }
    else throw LoadError("unknown option " + a);
  }
  if (o.requests < 1 || o.output_len < 1) throw LoadError("--requests and --output-len must be >= 1");
  if (o.prompt_min < 1 || o.prompt_max < o.prompt_min) throw LoadError("--prompt-range needs 1 <= MIN <= MAX");
  if (o.shared_prefix > o.prompt_min) throw LoadError("--shared-prefix must not exceed the shortest prompt");
  if (o.max_num_seqs == 0) o.max_num_seqs = o.requests;
  if (o.kv_slots == 0) o.kv_slots = o.max_num_seqs;
  if (o.backend != "cpu" && o.backend != "cuda") throw LoadError("--backend must be cpu or cuda");
  if (o.mtp_draft < 1 || o.mtp_draft > 16) throw LoadError("--mtp-draft must be in [1, 16]");
  if (o.mtp_oracle >= 0 && o.temperature > 0) throw LoadError("--mtp-oracle measures greedy decoding (--temperature 0)");
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

void report_speculation(const EngineStats& e, const std::vector<StepStats>& steps, double step_s) {
  if (e.spec_draft_tokens == 0 && e.spec_drafts == 0) return;
  double draft_s = 0;
  std::map<int, int> k_hist;
  for (const StepStats& s : steps) {
    draft_s += s.draft_us / 1e6;
    if (s.decode_tokens > 0) k_hist[s.spec_draft_len] += 1;
  }
  std::printf("speculation: %llu verifications, %llu draft tokens, %llu accepted (%.1f%%), %.2f tokens per verification;"
              " drafting %.0f%% of step time\n",
              (unsigned long long)e.spec_drafts, (unsigned long long)e.spec_draft_tokens,
              (unsigned long long)e.spec_accepted_tokens,
              e.spec_draft_tokens ? 100.0 * double(e.spec_accepted_tokens) / double(e.spec_draft_tokens) : 0.0,
              e.spec_drafts ? 1.0 + double(e.spec_accepted_tokens) / double(e.spec_drafts) : 0.0,
              step_s > 0 ? 100.0 * draft_s / step_s : 0.0);
  std::printf("  accepted per position:");
  for (uint64_t a : e.spec_accepted_per_position) std::printf(" %llu", (unsigned long long)a);
  std::printf("\n  K chosen (steps with decodes):");
  for (const auto& [k, n] : k_hist) std::printf(" K=%d x%d", k, n);
  std::printf("\n");
}

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
      decode_tok += double(s.num_sampled);  // with speculation a decode may emit several tokens
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
  report_speculation(engine, steps, step_s);
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

// The MTP draft model on the pass's backend (CPU, or the GPU's CudaMtpDraftModel).
std::unique_ptr<DraftModel> make_draft_model(Backend& backend, const ModelConfig& c, const MtpWeights& mtp) {
  if (auto* cpu = dynamic_cast<CpuBackend*>(&backend)) return std::make_unique<CpuMtpDraftModel>(*cpu, c, mtp);
#ifdef DS4_BENCH_CUDA
  if (auto* gpu = dynamic_cast<CudaBackend*>(&backend))
    return std::make_unique<CudaMtpDraftModel>(*gpu, c, DeviceMtpWeights::upload(mtp));
#endif
  throw LoadError("--mtp: this backend has no MTP draft model");
}

// CPU time of the process so far (s). On a shared machine tokens per CPU-s are steadier than per
// wall-s (the pool's workers block, they do not spin).
double process_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * double(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// One pass: a fresh backend and pool, every request submitted at once, read to the end.
struct PassResult {
  double cpu_s = 0;  // user + system time of the process (all threads) during the pass
  std::vector<StreamChunk> finals;
  std::vector<std::vector<int32_t>> outputs;
  std::vector<StepStats> steps;
  EngineStats stats;
  double wall_s = 0;
};

void report_cpu(const PassResult& r) {
  int64_t out = 0;
  for (const StreamChunk& f : r.finals) out += f.usage.completion_tokens;
  std::printf("cpu: %.2f s user+sys over the pass: %.1f output tok per CPU-s\n", r.cpu_s, r.cpu_s > 0 ? double(out) / r.cpu_s : 0.0);
}

PassResult run_pass(const BenchOptions& o, const Model& model, const MtpModule* mtp, int64_t blocks,
                    const std::vector<GenerationRequest>& requests, const SpeculativeConfig* spec_config, bool banner) {
  const ModelConfig& c = model.config;
  EngineParts parts = make_parts(o, model, blocks);
  std::unique_ptr<DraftModel> draft;
  std::unique_ptr<Speculator> spec;
  if (spec_config) {
    if (mtp) draft = make_draft_model(*parts.backend, c, mtp->weights);
    try {
      spec = std::make_unique<Speculator>(*spec_config, *parts.backend, draft.get(), c.n_vocab, -1);
    } catch (const std::invalid_argument& e) {
      throw LoadError(e.what());
    }
  }
  EngineConfig config{.scheduler = {.max_num_seqs = o.max_num_seqs, .max_num_batched_tokens = o.max_batched_tokens,
                                    .max_prefill_chunk_tokens = o.chunk},
                      .context_length = c.context_length, .eos_token_id = -1, .n_vocab = c.n_vocab,
                      .max_queued_requests = requests.size() + 1};
  Engine engine(*parts.backend, *parts.pool, config, spec.get());
  PassResult r;
  engine.set_step_observer([&](const StepStats& s) { r.steps.push_back(s); });  // read after stop()
  if (banner)
    std::printf("ds4serve-bench: model %s (%d layers, vocab %d), %s; %d requests x prompt %d..%d (shared %d) "
                "+ output %d; max_num_seqs %d, max_batched_tokens %lld; %lld KV blocks x %lld tokens, %d slots\n",
                c.name.c_str(), c.n_layer, c.n_vocab, parts.description.c_str(), o.requests, o.prompt_min, o.prompt_max,
                o.shared_prefix, o.output_len, o.max_num_seqs, (long long)o.max_batched_tokens, (long long)blocks,
                (long long)kKvBlockTokens, o.kv_slots);
  const double cpu0 = process_cpu_s();
  engine.start();
  const auto t0 = EngineClock::now();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const GenerationRequest& q : requests) streams.push_back(engine.submit(q));
  r.finals.resize(streams.size());
  r.outputs.resize(streams.size());
  for (size_t i = 0; i < streams.size(); ++i) {
    StreamChunk chunk;
    while (!r.finals[i].finished()) {
      if (!streams[i]->wait_for(chunk, std::chrono::seconds(1))) continue;
      r.outputs[i].insert(r.outputs[i].end(), chunk.tokens.begin(), chunk.tokens.end());
      r.finals[i] = std::move(chunk);
    }
    if (r.finals[i].finish_reason != FinishReason::kLength)
      throw LoadError("request " + std::to_string(i) + " ended with " + finish_reason_name(r.finals[i].finish_reason) +
                      ": " + r.finals[i].error);
  }
  r.wall_s = std::chrono::duration<double>(EngineClock::now() - t0).count();
  engine.stop();
  r.cpu_s = process_cpu_s() - cpu0;
  r.stats = engine.stats();
  return r;
}

SpeculativeConfig speculative_config(const BenchOptions& o) {
  return SpeculativeConfig{.max_draft = o.mtp_draft, .adaptive = o.mtp_adaptive, .pairing = o.mtp_pairing};
}

int run(const BenchOptions& o) {
  const auto model = load_model(o.model);
  const ModelConfig& c = model->config;
  const int64_t block_tokens = kKvBlockTokens;
  const int64_t per_request_blocks = (o.prompt_max + o.output_len + o.mtp_draft + block_tokens) / block_tokens;
  const int64_t blocks = o.kv_blocks > 0 ? o.kv_blocks : per_request_blocks * o.requests;
  const std::unique_ptr<MtpModule> mtp = o.mtp.empty() ? nullptr : load_mtp(o.mtp, c);
  const std::vector<GenerationRequest> requests = make_requests(o, c.n_vocab);
  if (!o.speculative()) {
    const PassResult r = run_pass(o, *model, nullptr, blocks, requests, nullptr, true);
    report(r.stats, r.steps, r.finals, r.wall_s);
    report_cpu(r);
    return 0;
  }
  SpeculativeConfig sc = speculative_config(o);
  std::map<std::vector<int32_t>, std::vector<int32_t>> truth;  // prompt -> output of the plain pass
  if (o.mtp_oracle >= 0) {
    std::printf("== pass 1: no speculation (the oracle's reference tokens)\n");
    const PassResult plain = run_pass(o, *model, nullptr, blocks, requests, nullptr, true);
    report(plain.stats, plain.steps, plain.finals, plain.wall_s);
    report_cpu(plain);
    for (size_t i = 0; i < requests.size(); ++i) truth[requests[i].prompt_tokens] = plain.outputs[i];
    sc.oracle = [&truth](const Sequence& seq, int64_t index) -> int32_t {
      const auto it = truth.find(std::vector<int32_t>(seq.tokens.begin(), seq.tokens.begin() + seq.num_prompt_tokens));
      const int64_t g = index - seq.num_prompt_tokens;
      return it == truth.end() || g < 0 || g >= int64_t(it->second.size()) ? -1 : it->second[g];
    };
    sc.oracle_acceptance = o.mtp_oracle;
  }
  std::printf("== %sspeculative decoding: %s, K <= %d (%s policy), %s pairing\n", o.mtp_oracle >= 0 ? "pass 2: " : "",
              o.mtp_oracle >= 0 ? ("oracle drafts at " + std::to_string(o.mtp_oracle) + (mtp ? " (MTP run for its cost)" : " (free drafts)")).c_str()
                                : ("MTP " + o.mtp).c_str(),
              o.mtp_draft, o.mtp_adaptive ? "adaptive" : "fixed", pairing_name(o.mtp_pairing));
  const PassResult r = run_pass(o, *model, mtp.get(), blocks, requests, &sc, o.mtp_oracle < 0);
  report(r.stats, r.steps, r.finals, r.wall_s);
  report_cpu(r);
  if (o.mtp_oracle >= 0) {
    size_t same = 0;
    for (size_t i = 0; i < requests.size(); ++i) same += r.outputs[i] == truth[requests[i].prompt_tokens];
    std::printf("outputs identical to pass 1: %zu of %zu requests\n", same, requests.size());
  }
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
