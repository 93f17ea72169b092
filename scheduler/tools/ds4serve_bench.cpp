// ds4serve-bench: the offline engine benchmark (no HTTP). Default mode: submits N synthetic requests
// with given prompt / output lengths at once to an Engine (CPU backend over the paged KV pool, or,
// where built with CUDA, the CUDA backend) and prints prefill and decode tokens/s, step times, batch
// sizes, time to first token, preemptions and KV use. --users U1,U2,...: the closed loop of
// ds4serve-load run on the engine (closed_loop.h), reported in ds4serve-load's format, to compare
// the server through HTTP with the engine alone on the same workload. --synth PRESET: the synthetic
// model generated in GPU memory, on ds4serve's CUDA engine (bench_engine.h). Options: bench_options.h.
// Timings here are measurements, not checks.
// Speculative decoding (CPU or CUDA backend): --mtp FILE drafts with the MTP module, --mtp-draft K drafts per
// sequence and step at most; --mtp-oracle RATE first runs without speculation to learn each
// request's tokens, then forces drafts to them at that rate (speed against acceptance).
#include <algorithm>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <string>

#include <sys/resource.h>

#include "engine/kv_geometry.h"
#include "engine/load_error.h"
#include "engine/mtp_draft.h"
#include "scheduler/engine.h"
#include "scheduler/speculator.h"
#include "scheduler/tools/bench_engine.h"
#include "scheduler/tools/bench_options.h"
#include "scheduler/tools/closed_loop.h"

namespace {

using namespace ds4;

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

SpeculativeConfig speculative_config(const BenchOptions& o) {
  SpeculativeConfig sc;
  sc.max_draft = o.mtp_draft;
  sc.adaptive = o.mtp_adaptive;
  sc.pairing = o.mtp_pairing;
  return sc;
}

// The speculator of spec_config over the parts' backend and MTP draft model (built here unless the
// device engine built it); null without spec_config.
std::unique_ptr<Speculator> make_speculator(const SpeculativeConfig* spec_config, EngineParts& parts,
                                            const ModelConfig& c, const MtpModule* mtp) {
  if (!spec_config) return nullptr;
  if (mtp && !parts.draft) parts.draft = make_draft_model(*parts.backend, c, mtp->weights);
  try {
    return std::make_unique<Speculator>(*spec_config, *parts.backend, parts.draft.get(), c.n_vocab, -1);
  } catch (const std::invalid_argument& e) {
    throw LoadError(e.what());
  }
}

EngineConfig engine_config(const BenchOptions& o, const ModelConfig& c, size_t max_queued) {
  return EngineConfig{.scheduler = {.max_num_seqs = o.max_num_seqs, .max_num_batched_tokens = o.max_batched_tokens,
                                    .max_prefill_chunk_tokens = o.chunk},
                      .context_length = c.context_length, .eos_token_id = -1, .n_vocab = c.n_vocab,
                      .max_queued_requests = max_queued};
}

PassResult run_pass(const BenchOptions& o, const BenchModel& model, const MtpModule* mtp, int64_t blocks,
                    const std::vector<GenerationRequest>& requests, const SpeculativeConfig* spec_config, bool banner) {
  const ModelConfig& c = model.config;
  EngineParts parts = make_engine_parts(o, model, blocks, spec_config ? mtp : nullptr);
  const std::unique_ptr<Speculator> spec = make_speculator(spec_config, parts, c, mtp);
  Engine engine(*parts.backend, parts.pool(), engine_config(o, c, requests.size() + 1), spec.get());
  PassResult r;
  engine.set_step_observer([&](const StepStats& s) { r.steps.push_back(s); });  // read after stop()
  const KvUsage pool = parts.pool().usage();  // the pool as built (the device engine sizes its own)
  if (banner)
    std::printf("ds4serve-bench: model %s (%d layers, vocab %d), %s; %d requests x prompt %d..%d (shared %d) "
                "+ output %d; max_num_seqs %d, max_batched_tokens %lld; %lld KV blocks x %lld tokens, %d slots\n",
                model.name().c_str(), c.n_layer, c.n_vocab, parts.description.c_str(), o.requests, o.prompt_min,
                o.prompt_max, o.shared_prefix, o.output_len, o.max_num_seqs, (long long)o.max_batched_tokens,
                (long long)pool.total_blocks, (long long)pool.block_tokens, o.kv_slots);
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

// The closed loop (--users): one engine for the warm-up and every level.
int run_closed(const BenchOptions& o, const BenchModel& model, const MtpModule* mtp, int64_t blocks) {
  const ModelConfig& c = model.config;
  EngineParts parts = make_engine_parts(o, model, blocks, mtp);
  const SpeculativeConfig sc = speculative_config(o);
  const std::unique_ptr<Speculator> spec = make_speculator(mtp ? &sc : nullptr, parts, c, mtp);
  const int max_users = *std::max_element(o.users.begin(), o.users.end());
  Engine engine(*parts.backend, parts.pool(), engine_config(o, c, size_t(max_users) + 1), spec.get());
  StepLog log;
  engine.set_step_observer([&log](const StepStats& s) {
    std::lock_guard lock(log.mutex);
    log.steps.push_back(s);
  });
  std::printf("ds4serve-bench: model %s (%d layers, vocab %d), %s; closed loop of %zu levels x %.1f s, prompt %d..%d "
              "+ output %d; max_num_seqs %d, max_batched_tokens %lld%s\n",
              model.name().c_str(), c.n_layer, c.n_vocab, parts.description.c_str(), o.users.size(), o.level_time_s,
              o.prompt_min, o.prompt_max, o.output_len, o.max_num_seqs, (long long)o.max_batched_tokens,
              spec ? ", speculative decoding (MTP)" : "");
  std::fflush(stdout);
  engine.start();
  const int rc = run_closed_loop(o, engine, log, c.n_vocab, model.name() + ", " + parts.description);
  engine.stop();
  return rc;
}

int run(const BenchOptions& o) {
  const BenchModel model = load_bench_model(o);
  const ModelConfig& c = model.config;
  const int64_t block_tokens = kKvBlockTokens;
  const int64_t per_request_blocks = (o.prompt_max + o.output_len + o.mtp_draft + block_tokens) / block_tokens;
  const int64_t blocks =
      o.kv_blocks > 0 ? o.kv_blocks : per_request_blocks * (o.closed_loop() ? o.max_num_seqs : o.requests);
  const std::unique_ptr<MtpModule> mtp = o.mtp.empty() ? nullptr : load_mtp(o.mtp, c);
  if (o.closed_loop()) return run_closed(o, model, mtp.get(), blocks);
  const std::vector<GenerationRequest> requests = make_requests(o, c.n_vocab);
  if (!o.speculative()) {
    const PassResult r = run_pass(o, model, nullptr, blocks, requests, nullptr, true);
    report(r.stats, r.steps, r.finals, r.wall_s);
    report_cpu(r);
    return 0;
  }
  SpeculativeConfig sc = speculative_config(o);
  std::map<std::vector<int32_t>, std::vector<int32_t>> truth;  // prompt -> output of the plain pass
  if (o.mtp_oracle >= 0) {
    std::printf("== pass 1: no speculation (the oracle's reference tokens)\n");
    const PassResult plain = run_pass(o, model, nullptr, blocks, requests, nullptr, true);
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
  const PassResult r = run_pass(o, model, mtp.get(), blocks, requests, &sc, o.mtp_oracle < 0);
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
    return run(parse_bench_options(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ds4serve-bench: error: %s\n", e.what());
    return 1;
  }
}
