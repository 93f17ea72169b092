// cuda_mtp_bench: speculative decoding on the GPU, speed against acceptance (issue 11's table).
// The model (--synth PRESET: generated in GPU memory, or --model FILE) and the MTP module
// (--mtp FILE, or generated with --mtp-seed S: the bytes of `ds4serve-model synth --mtp`) are
// loaded once; one CudaBackend serves every pass. Per batch size B: a plain pass (greedy, B
// requests at once; the no-speculation baseline and the oracle's reference tokens), then per
// (K, rate) an oracle pass (drafts forced to the reference tokens with probability rate, the MTP
// still run for its cost, fixed K), and one pass with the adaptive policy and the MTP's own drafts.
// Prints one CSV row per pass: decode tok/s over decode-only steps, × baseline, tokens per
// verification, drafting share of the step time, and whether the outputs equal the plain pass.
// Timings are measurements, not checks; passes past --time-limit are reported as skipped.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_mtp.h"
#include "engine/load_error.h"
#include "engine/model.h"
#include "engine/mtp_draft.h"
#include "engine/synth.h"
#include "scheduler/budget_kv_pool.h"
#include "scheduler/engine.h"
#include "scheduler/speculator.h"

namespace ds4 {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr const char* kUsage =
    "usage: cuda_mtp_bench (--synth PRESET [--quant q2|q4] [--seed S] | --model FILE) (--mtp FILE | --mtp-seed S)\n"
    "                      [--batches 1,4,16,64] [--ks 1,2,3] [--rates 0,0.5,0.8,1] [--prompt P] [--output N]\n"
    "                      [--time-limit S] [--adaptive 0|1]\n";

struct Options {
  std::string synth, model, quant = "q2", mtp;
  uint64_t seed = 1, mtp_seed = 2;
  bool mtp_synth = false;
  std::vector<int> batches{1, 4, 16, 64}, ks{1, 2, 3};
  std::vector<double> rates{0, 0.5, 0.8, 1.0};
  int prompt = 16, output = 16;
  double time_limit_s = 300;
  bool adaptive = true;  // also the adaptive-policy pass per batch
};

template <typename T>
std::vector<T> list_of(const std::string& s) {
  std::vector<T> v;
  size_t at = 0;
  while (at <= s.size()) {
    const size_t comma = s.find(',', at);
    v.push_back(static_cast<T>(std::stod(s.substr(at, comma - at))));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") { std::fputs(kUsage, stdout); std::exit(0); }
    if (i + 1 >= argc) throw LoadError("option " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--synth") o.synth = v;
    else if (a == "--model") o.model = v;
    else if (a == "--quant") o.quant = v;
    else if (a == "--seed") o.seed = std::stoull(v);
    else if (a == "--mtp") o.mtp = v;
    else if (a == "--mtp-seed") o.mtp_seed = std::stoull(v), o.mtp_synth = true;
    else if (a == "--batches") o.batches = list_of<int>(v);
    else if (a == "--ks") o.ks = list_of<int>(v);
    else if (a == "--rates") o.rates = list_of<double>(v);
    else if (a == "--prompt") o.prompt = std::stoi(v);
    else if (a == "--output") o.output = std::stoi(v);
    else if (a == "--time-limit") o.time_limit_s = std::stod(v);
    else if (a == "--adaptive") o.adaptive = v != "0";
    else throw LoadError("unknown option " + a + "\n" + kUsage);
  }
  if (o.synth.empty() == o.model.empty()) throw LoadError("give exactly one of --synth PRESET and --model FILE");
  if (o.mtp.empty() == !o.mtp_synth) throw LoadError("give exactly one of --mtp FILE and --mtp-seed S");
  if (o.prompt < 1 || o.output < 2 || o.batches.empty() || o.ks.empty()) throw LoadError("bad --prompt / --output / lists");
  for (int k : o.ks)
    if (k < 1 || k > 16) throw LoadError("--ks: K must be in [1, 16]");
  return o;
}

struct PassResult {
  double decode_tok_s = 0, draft_share = 0, tokens_per_verification = 0, accepted_share = 0;
  std::vector<std::vector<int32_t>> outputs;
};

// One pass: every request submitted at once to a fresh engine over the shared backend.
PassResult run_pass(CudaBackend& gpu, const ModelConfig& c, int max_seqs, const std::vector<GenerationRequest>& requests,
                    Speculator* spec) {
  const int64_t per_seq = (requests[0].prompt_tokens.size() + requests[0].max_tokens + 20 + 255) / 256;
  BudgetKvPool pool(per_seq * max_seqs, cuda::kKvBlockPositions, max_seqs, [&gpu] { return gpu.new_sequence(); });
  EngineConfig ec{.scheduler = {.max_num_seqs = max_seqs, .max_num_batched_tokens = 4096},
                  .context_length = c.context_length, .eos_token_id = -1, .n_vocab = c.n_vocab,
                  .max_queued_requests = requests.size() + 1};
  Engine engine(gpu, pool, ec, spec);
  std::vector<StepStats> steps;
  engine.set_step_observer([&steps](const StepStats& s) { steps.push_back(s); });
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const GenerationRequest& r : requests) streams.push_back(engine.submit(r));
  engine.start();
  PassResult r;
  for (auto& stream : streams) {
    std::vector<int32_t> tokens;
    StreamChunk chunk;
    while (!chunk.finished()) {
      if (!stream->wait_for(chunk, std::chrono::seconds(1))) continue;
      tokens.insert(tokens.end(), chunk.tokens.begin(), chunk.tokens.end());
    }
    if (!chunk.error.empty()) throw LoadError("request failed: " + chunk.error);
    r.outputs.push_back(tokens);
  }
  engine.stop();
  double decode_s = 0, decode_tok = 0, draft_s = 0;
  for (const StepStats& s : steps) {
    if (s.prefill_tokens > 0) continue;
    decode_s += s.step_us / 1e6, decode_tok += double(s.num_sampled), draft_s += s.draft_us / 1e6;
  }
  const EngineStats e = engine.stats();
  r.decode_tok_s = decode_s > 0 ? decode_tok / decode_s : 0;
  r.draft_share = decode_s > 0 ? draft_s / decode_s : 0;
  r.tokens_per_verification = e.spec_drafts ? 1.0 + double(e.spec_accepted_tokens) / double(e.spec_drafts) : 1.0;
  r.accepted_share = e.spec_draft_tokens ? double(e.spec_accepted_tokens) / double(e.spec_draft_tokens) : 0;
  return r;
}

std::vector<GenerationRequest> make_requests(int n, int prompt, int output, int32_t n_vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<GenerationRequest> out(n);
  for (size_t i = 0; i < out.size(); ++i) {
    GenerationRequest& r = out[i];
    r.sampling.seed = seed * 1000 + i;  // the oracle's draws follow the request seed: one stream each
    for (int t = 0; t < prompt; ++t) r.prompt_tokens.push_back(static_cast<int32_t>(100 + rng() % uint64_t(std::min(n_vocab, 100000) - 100)));
    r.max_tokens = output;
    r.ignore_eos = true;
    r.sampling.temperature = 0.0f;
  }
  return out;
}

int run(const Options& o) {
  CudaBackend::select_device(0);
  std::unique_ptr<Model> model;
  std::unique_ptr<MtpModule> mtp_file;
  ModelConfig config;
  DeviceWeights weights;
  const auto t0 = Clock::now();
  QuantScheme scheme = QuantScheme::kQ2;
  if (!o.synth.empty()) {
    config = preset_by_name(o.synth);
    const auto q = quant_scheme_from_name(o.quant);
    if (!q) throw LoadError("unknown --quant " + o.quant);
    scheme = *q;
    weights = DeviceWeights::synthesize(config, scheme, o.seed);
  } else {
    model = load_model(o.model);
    config = model->config;
    weights = DeviceWeights::upload(model->weights);
  }
  DeviceMtpWeights mtp_weights;
  if (o.mtp_synth) {
    mtp_weights = DeviceMtpWeights::synthesize(config, scheme, o.mtp_seed);
  } else {
    mtp_file = load_mtp(o.mtp, config);
    mtp_weights = DeviceMtpWeights::upload(mtp_file->weights);
  }
  std::printf("model %s: %.2f GB + MTP %.2f GB on the device in %.1f s\n", config.name.c_str(), weights.bytes() / 1e9,
              mtp_weights.bytes() / 1e9, seconds_since(t0));
  const int max_b = *std::max_element(o.batches.begin(), o.batches.end());
  CudaBackendOptions bo;
  bo.max_seqs = max_b;
  bo.kv_blocks = int64_t(max_b) * ((o.prompt + o.output + 20 + 255) / 256);
  CudaBackend gpu(config, std::move(weights), bo);
  CudaMtpDraftModel draft(gpu, config, std::move(mtp_weights));

  std::printf("csv,batch,K,rate,policy,decode_tok_s,x_baseline,tokens_per_verification,accepted_pct,draft_pct,identical\n");
  std::fflush(stdout);
  const auto start = Clock::now();
  for (int B : o.batches) {
    if (seconds_since(start) > o.time_limit_s) {
      std::printf("batch %d: skipped (time limit %.0f s)\n", B, o.time_limit_s);
      continue;
    }
    const std::vector<GenerationRequest> requests = make_requests(B, o.prompt, o.output, config.n_vocab, 7 + B);
    run_pass(gpu, config, B, make_requests(B, o.prompt, 4, config.n_vocab, 99), nullptr);  // warm-up: graphs, scratch
    const PassResult plain = run_pass(gpu, config, B, requests, nullptr);
    std::printf("csv,%d,0,-,none,%.2f,1.000,1.00,-,0,%d/%d\n", B, plain.decode_tok_s, B, B);
    std::fflush(stdout);
    std::map<std::vector<int32_t>, std::vector<int32_t>> history;  // prompt -> prompt + reference tokens
    for (int i = 0; i < B; ++i) {
      std::vector<int32_t> h = requests[i].prompt_tokens;
      h.insert(h.end(), plain.outputs[i].begin(), plain.outputs[i].end());
      history[requests[i].prompt_tokens] = h;
    }
    auto oracle = [&history](const Sequence& seq, int64_t index) -> int32_t {
      const auto it = history.find(std::vector<int32_t>(seq.tokens.begin(), seq.tokens.begin() + seq.num_prompt_tokens));
      return it == history.end() || index < 0 || index >= int64_t(it->second.size()) ? -1 : it->second[size_t(index)];
    };
    auto report = [&](int K, const std::string& rate, const char* policy, const PassResult& r) {
      int same = 0;
      for (int i = 0; i < B; ++i) same += r.outputs[i] == plain.outputs[i];
      std::printf("csv,%d,%d,%s,%s,%.2f,%.3f,%.2f,%.1f,%.0f,%d/%d\n", B, K, rate.c_str(), policy, r.decode_tok_s,
                  plain.decode_tok_s > 0 ? r.decode_tok_s / plain.decode_tok_s : 0.0, r.tokens_per_verification,
                  100 * r.accepted_share, 100 * r.draft_share, same, B);
      std::fflush(stdout);
    };
    for (int K : o.ks) {
      for (double rate : o.rates) {
        if (seconds_since(start) > o.time_limit_s) {
          std::printf("batch %d K %d rate %.2f: skipped (time limit)\n", B, K, rate);
          continue;
        }
        SpeculativeConfig sc;
        sc.max_draft = K, sc.adaptive = false, sc.oracle = oracle, sc.oracle_acceptance = rate;
        Speculator spec(sc, gpu, &draft, config.n_vocab, -1);
        char rate_text[16];
        std::snprintf(rate_text, sizeof rate_text, "%.2f", rate);
        report(K, rate_text, "fixed", run_pass(gpu, config, B, requests, &spec));
      }
    }
    if (!o.adaptive || seconds_since(start) > o.time_limit_s) continue;
    SpeculativeConfig sc;  // the adaptive policy with the MTP's own drafts (random weights: ~0 accepted)
    sc.max_draft = *std::max_element(o.ks.begin(), o.ks.end());
    Speculator spec(sc, gpu, &draft, config.n_vocab, -1);
    report(sc.max_draft, "mtp", "adaptive", run_pass(gpu, config, B, requests, &spec));
  }
  return 0;
}

}  // namespace
}  // namespace ds4

int main(int argc, char** argv) {
  try {
    return ds4::run(ds4::parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_mtp_bench: error: %s\n", e.what());
    return 1;
  }
}
