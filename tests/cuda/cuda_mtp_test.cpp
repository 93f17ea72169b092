// The MTP draft module on the GPU (engine/cuda/cuda_mtp.h, CudaBackend::forward_mtp) on the demo
// model: its logits and output states equal the CPU reference (CpuMtpDraftModel) within the
// backend's stated tolerance (1e-5 relative without the KV quantisation, as the whole-model
// teacher-forcing test) over catch-up runs longer than the window, recursive drafts ahead, a rewind
// over the draft rows and a restart, two sequences per call; the weights generated in GPU memory
// equal the MTP file `ds4serve-model synth --mtp` wrote; and through the engine with the real MTP
// drafting on the GPU, greedy outputs are token for token those without speculation (single and
// batched requests, prompts ending mid-window of ratio 4 and 128, with and without oracle drafts),
// and seeded sampling runs to the end, reproducibly under a fixed K; ds4serve's CUDA engine factory
// builds the draft model for --mtp FILE and --mtp synth.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <string>

#include "engine/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_mtp.h"
#include "engine/model.h"
#include "engine/mtp_draft.h"
#include "engine/synth.h"
#include "engine_test_util.h"
#include "gpu_test_util.h"
#include "http/cuda/cuda_engine_factory.h"
#include "scheduler/engine.h"
#include "scheduler/paged_kv_pool.h"
#include "scheduler/speculator.h"

namespace ds4 {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<Model> demo_model() { return load_model(test::binary_dir() + "/models/tiny-q2.gguf"); }
std::unique_ptr<MtpModule> demo_mtp(const ModelConfig& c) { return load_mtp(test::binary_dir() + "/models/tiny-q2-mtp.gguf", c); }

// The two draft models side by side; every call gets the same runs on both and is compared.
struct PairedDraft {
  DraftModel& cpu;
  DraftModel& gpu;
  std::unique_ptr<SequenceKv> cpu_state[2], gpu_state[2];
  double worst_logits = 0, worst_states = 0;
  int calls = 0;

  // Runs (tokens[s], states[s]) for the sequences s with tokens; returns the CPU output.
  ForwardOutput call(const std::vector<int32_t> (&tokens)[2], const std::vector<float> (&states)[2]) {
    std::vector<DraftRun> c_runs, g_runs;
    for (int s = 0; s < 2; ++s) {
      if (tokens[s].empty()) continue;
      c_runs.push_back({cpu_state[s].get(), tokens[s], states[s]});
      g_runs.push_back({gpu_state[s].get(), tokens[s], states[s]});
    }
    const ForwardOutput want = cpu.forward(c_runs);
    const ForwardOutput got = gpu.forward(g_runs);
    EXPECT_EQ(got.n_rows, want.n_rows);
    const double el = test::max_rel_error(got.logits, want.logits), es = test::max_rel_error(got.final_states, want.final_states);
    worst_logits = std::max(worst_logits, el), worst_states = std::max(worst_states, es);
    EXPECT_LT(el, 1e-5) << "call " << calls;
    EXPECT_LT(es, 1e-5) << "call " << calls;
    for (int s = 0; s < 2; ++s) EXPECT_EQ(gpu_state[s]->num_tokens(), cpu_state[s]->num_tokens());
    ++calls;
    return want;
  }
  void restart(int s, int64_t pos) {
    cpu.restart(*cpu_state[s], pos);
    gpu.restart(*gpu_state[s], pos);
  }
  void rewind(int s, int64_t pos) {
    cpu_state[s]->set_num_tokens(pos);
    gpu_state[s]->set_num_tokens(pos);
  }
};

int32_t argmax(const float* row, int64_t n) { return static_cast<int32_t>(std::max_element(row, row + n) - row); }

TEST(CudaMtp, ForwardMatchesCpuReference) {
  DS4_REQUIRE_GPU();
  const auto m = demo_model();
  const ModelConfig& c = m->config;
  const auto mtp = demo_mtp(c);
  const ForwardOptions fo{.quantize_kv = false};
  CpuBackend cpu(c, m->weights, fo);
  CpuMtpDraftModel cpu_draft(cpu, c, mtp->weights);
  CudaBackendOptions o;
  o.forward.quantize_kv = false;
  CudaBackend gpu(c, m->weights, o);
  CudaMtpDraftModel gpu_draft(gpu, c, DeviceMtpWeights::upload(mtp->weights));
  const int64_t width = cpu_draft.state_width();
  ASSERT_EQ(gpu_draft.state_width(), width);

  // Target states of two prompts (CPU, every row): the MTP's paired inputs.
  std::vector<int32_t> prompt[2];
  std::vector<float> target[2];
  for (int s = 0; s < 2; ++s) {
    for (int t = 0; t < 60 + 11 * s; ++t) prompt[s].push_back((300 + 7919 * (t + 17 * s)) % c.n_vocab);
    ContiguousKv kv(c);
    ForwardBatch b;
    b.sequences.push_back({&kv, prompt[s], true});
    target[s] = cpu.forward(b).final_states;
  }
  PairedDraft d{cpu_draft, gpu_draft};
  for (int s = 0; s < 2; ++s) d.cpu_state[s] = cpu_draft.new_state(4), d.gpu_state[s] = gpu_draft.new_state(4);
  auto states_of = [&](int s, int64_t from, int64_t n) {
    return std::vector<float>(target[s].begin() + from * width, target[s].begin() + (from + n) * width);
  };
  // Catch-up from a window start at 5 (s = 0) and 9 (s = 1) over more positions than the window
  // (next-token pairing: state i with token i + 1).
  std::vector<int32_t> tokens[2];
  std::vector<float> states[2];
  const int64_t start[2] = {5, 9}, end[2] = {50, 44};
  for (int s = 0; s < 2; ++s) {
    d.restart(s, start[s]);
    tokens[s].assign(prompt[s].begin() + start[s] + 1, prompt[s].begin() + end[s] + 1);
    states[s] = states_of(s, start[s], end[s] - start[s]);
  }
  ASSERT_GT(end[0] - start[0], c.sliding_window);
  ForwardOutput out = d.call(tokens, states);
  // Recursive drafts: four calls ahead, each feeding the previous draft and its output state.
  for (int j = 0; j < 4; ++j) {
    for (int s = 0; s < 2; ++s) {
      tokens[s] = {argmax(out.row(s), c.n_vocab)};
      states[s].assign(out.final_states.begin() + s * width, out.final_states.begin() + (s + 1) * width);
    }
    out = d.call(tokens, states);
  }
  // Rewind to the true end and continue with true inputs over the draft rows (the ring's slack).
  for (int s = 0; s < 2; ++s) {
    d.rewind(s, end[s]);
    tokens[s].assign(prompt[s].begin() + end[s] + 1, prompt[s].begin() + end[s] + 4);
    states[s] = states_of(s, end[s], 3);
  }
  out = d.call(tokens, states);
  // A restart of sequence 1 only (a pause in drafting): rows before it become invisible.
  d.restart(1, end[1] + 8);
  tokens[0].clear(), states[0].clear();
  tokens[1].assign(prompt[1].begin() + end[1] + 9, prompt[1].begin() + end[1] + 11);
  states[1] = states_of(1, end[1] + 8, 2);
  d.call(tokens, states);
  std::printf("[ gpu ] MTP forward, %d calls (catch-up over %lld positions, 4 drafts ahead, rewind, restart): "
              "max rel. error logits %.3g, states %.3g (bound 1e-5)\n",
              d.calls, (long long)(end[0] - start[0]), d.worst_logits, d.worst_states);
  for (int s = 0; s < 2; ++s) d.cpu_state[s].reset(), d.gpu_state[s].reset();
  EXPECT_EQ(gpu_draft.live_states(), 0);
}

// Copies a device tensor back (whole rows).
std::vector<uint8_t> host_bytes(const DeviceTensor& t) {
  std::vector<uint8_t> v(t.bytes());
  if (!v.empty()) DS4_CUDA_CHECK(cudaMemcpy(v.data(), t.data, v.size(), cudaMemcpyDeviceToHost));
  return v;
}

TEST(CudaMtp, SynthesizedWeightsEqualTheFile) {
  DS4_REQUIRE_GPU();
  const auto m = demo_model();
  const auto mtp = demo_mtp(m->config);
  CudaBackend::select_device(0);
  const DeviceMtpWeights synth = DeviceMtpWeights::synthesize(m->config, QuantScheme::kQ2, 2);  // data/CMakeLists.txt: --seed 2
  const DeviceMtpWeights up = DeviceMtpWeights::upload(mtp->weights);
  const std::pair<const DeviceTensor*, const DeviceTensor*> pairs[] = {
      {&synth.e_proj, &up.e_proj}, {&synth.h_proj, &up.h_proj}, {&synth.enorm, &up.enorm}, {&synth.hnorm, &up.hnorm},
      {&synth.norm, &up.norm}, {&synth.hc_head_fn, &up.hc_head_fn}, {&synth.block.attn_q_b, &up.block.attn_q_b},
      {&synth.block.ffn_gate_exps, &up.block.ffn_gate_exps}, {&synth.block.ffn_down_exps, &up.block.ffn_down_exps},
      {&synth.block.exp_probs_b, &up.block.exp_probs_b}, {&synth.block.hc_ffn_fn, &up.block.hc_ffn_fn}};
  for (const auto& [a, b] : pairs) {
    ASSERT_TRUE(a->present() && b->present());
    EXPECT_EQ(a->type, b->type);
    EXPECT_EQ(host_bytes(*a), host_bytes(*b));
  }
  EXPECT_EQ(synth.bytes(), up.bytes());
}

// Requests through the engine on the GPU; spec null: no speculation.
std::vector<std::vector<int32_t>> serve(Backend& gpu, KvPool& pool, const ModelConfig& c,
                                        const std::vector<GenerationRequest>& requests, Speculator* spec) {
  return test::serve_through_engine(gpu, pool, c, requests, spec);
}

std::unique_ptr<PagedKvPool> device_pool(const ModelConfig& c) {
  const KvPoolLayout layout = cuda_kv_layout(c, 64, 8, 8);
  return std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layout, make_cuda_kv_storage(layout)));
}

// Prompts ending mid-window: lengths 3, 37 (37 % 4 = 1), 130 (130 % 128 = 2), 259, 66, 133.
std::vector<GenerationRequest> mid_window_requests(const ModelConfig& c, float temperature) {
  std::vector<GenerationRequest> out;
  for (int len : {3, 37, 130, 259, 66, 133}) {
    GenerationRequest r;
    for (int t = 0; t < len; ++t) r.prompt_tokens.push_back((500 + 7919 * (t + 31 * len)) % c.n_vocab);
    r.max_tokens = 24;
    r.ignore_eos = true;
    r.sampling.temperature = temperature;
    r.sampling.seed = 1000 + len;
    out.push_back(r);
  }
  return out;
}

// The engine with the MTP drafting on the GPU (fixed K = 3) on its own backend and pool.
struct MtpEngine {
  std::unique_ptr<PagedKvPool> pool;
  std::unique_ptr<CudaBackend> gpu;
  std::unique_ptr<CudaMtpDraftModel> draft;
  std::unique_ptr<Speculator> spec;
  MtpEngine(const Model& m, const MtpWeights& mtp, SpeculativeConfig sc) : pool(device_pool(m.config)) {
    CudaBackendOptions o;
    o.kv_manager = &pool->manager();
    gpu = std::make_unique<CudaBackend>(m.config, m.weights, o);
    draft = std::make_unique<CudaMtpDraftModel>(*gpu, m.config, DeviceMtpWeights::upload(mtp));
    spec = std::make_unique<Speculator>(sc, *gpu, draft.get(), m.config.n_vocab, -1);
  }
  std::vector<std::vector<int32_t>> serve(const ModelConfig& c, const std::vector<GenerationRequest>& r) {
    return ds4::serve(*gpu, *pool, c, r, spec.get());
  }
};

TEST(CudaMtp, EngineGreedyWithMtpEqualsWithout) {
  DS4_REQUIRE_GPU();
  const auto m = demo_model();
  const ModelConfig& c = m->config;
  const auto mtp = demo_mtp(c);
  const std::vector<GenerationRequest> requests = mid_window_requests(c, 0.0f);
  auto plain_pool = device_pool(c);
  CudaBackendOptions o;
  o.kv_manager = &plain_pool->manager();
  CudaBackend plain_gpu(c, m->weights, o);
  const auto want = serve(plain_gpu, *plain_pool, c, requests, nullptr);

  const auto history = test::token_history(requests, want);  // prompt -> prompt + greedy tokens
  SpeculativeConfig sc;
  sc.max_draft = 3;
  sc.adaptive = false;
  for (const double oracle : {-1.0, 0.7}) {  // the MTP's own drafts; then oracle drafts with the MTP run
    if (oracle >= 0) {
      sc.oracle_acceptance = oracle;
      sc.oracle = [&history](const Sequence& seq, int64_t index) -> int32_t {
        const auto it = history.find(std::vector<int32_t>(seq.tokens.begin(), seq.tokens.begin() + seq.num_prompt_tokens));
        if (it == history.end() || index < 0 || index >= static_cast<int64_t>(it->second.size())) return -1;
        return it->second[static_cast<size_t>(index)];
      };
    }
    MtpEngine alone(*m, mtp->weights, sc), batched(*m, mtp->weights, sc);
    const auto single = alone.serve(c, {requests[2]});
    EXPECT_EQ(single[0], want[2]) << "single request, oracle " << oracle;
    const auto got = batched.serve(c, requests);
    for (size_t i = 0; i < requests.size(); ++i) {
      EXPECT_EQ(want[i].size(), 24u);
      EXPECT_EQ(got[i], want[i]) << "request " << i << ", oracle " << oracle;
    }
    std::printf("[ gpu ] engine with the MTP on the GPU (K = 3, %s): %zu greedy requests + 1 alone token-identical "
                "to the plain engine\n",
                oracle < 0 ? "its own drafts" : "oracle drafts at 0.7, MTP run", requests.size());
  }
}

// ds4serve's CUDA path: the engine factory builds the MTP draft model (from the file's weights, or
// generated for --mtp synth), and the speculative engine over its parts returns the plain tokens.
TEST(CudaMtp, ServerFactoryBuildsTheDraftModel) {
  DS4_REQUIRE_GPU();
  const auto m = demo_model();
  const ModelConfig& c = m->config;
  const auto mtp = demo_mtp(c);
  const std::vector<GenerationRequest> requests = mid_window_requests(c, 0.0f);
  http::DeviceEngineRequest r;
  r.config = &c;
  r.weights = &m->weights;
  r.max_num_seqs = 8;
  r.kv_memory_gib = 0.5;
  http::DeviceEngine plain = http::make_cuda_engine(r);
  EXPECT_EQ(plain.draft, nullptr);
  const auto want = serve(*plain.backend, *plain.pool, c, requests, nullptr);
  for (const bool synth : {false, true}) {
    r.mtp = synth ? nullptr : &mtp->weights;
    r.mtp_synth = synth, r.mtp_synth_seed = 2;
    http::DeviceEngine e = http::make_cuda_engine(r);
    ASSERT_NE(e.draft, nullptr);
    SpeculativeConfig sc;
    sc.max_draft = 3;
    Speculator spec(sc, *e.backend, e.draft.get(), c.n_vocab, -1);
    const auto got = serve(*e.backend, *e.pool, c, requests, &spec);
    for (size_t i = 0; i < requests.size(); ++i) EXPECT_EQ(got[i], want[i]) << "request " << i << (synth ? " (synth MTP)" : "");
  }
  std::printf("[ gpu ] ds4serve's CUDA factory with --mtp FILE and --mtp synth (adaptive K <= 3): %zu greedy requests "
              "token-identical to the plain engine\n", requests.size());
}

TEST(CudaMtp, SeededSamplingWithMtpRunsReproducibly) {
  DS4_REQUIRE_GPU();
  const auto m = demo_model();
  const ModelConfig& c = m->config;
  const auto mtp = demo_mtp(c);
  const std::vector<GenerationRequest> requests = mid_window_requests(c, 0.8f);
  SpeculativeConfig sc;
  sc.max_draft = 2;
  sc.adaptive = false;
  std::vector<std::vector<int32_t>> runs[2];
  for (auto& run : runs) {
    MtpEngine e(*m, mtp->weights, sc);
    run = e.serve(c, requests);
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(runs[0][i].size(), 24u);
    EXPECT_EQ(runs[0][i], runs[1][i]) << "request " << i;
  }
  std::printf("[ gpu ] seeded sampling (T = 0.8) with the MTP on the GPU, K = 2: %zu requests ran to the end, "
              "identical over two runs\n", requests.size());
}

}  // namespace
}  // namespace ds4
