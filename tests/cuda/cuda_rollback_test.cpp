// CudaBackend::rollback (engine/cuda/cuda_rollback.cpp) on the demo model: two sequences fed
// speculative chunks of 4 tokens in one batch and rolled back to 1-4 kept tokens, round after
// round across 4- and 128-position windows and the raw ring's wrap, give the logits of a reference
// pair fed only the kept tokens (same chunks, never speculative), every rollback taken from the
// undo log (no re-feed); and the engine with speculative
// decoding on the GPU (oracle drafts accepted at 60%, K = 3, greedy) returns exactly the tokens of
// the engine without it (issue 11's exactness on the GPU).
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <string>

#include "engine/cuda/cuda_backend.h"
#include "engine/model.h"
#include "engine_test_util.h"
#include "gpu_test_util.h"
#include "scheduler/engine.h"
#include "scheduler/paged_kv_pool.h"
#include "scheduler/speculator.h"

namespace ds4 {
namespace {

using namespace std::chrono_literals;

std::vector<float> rows_of(const ForwardOutput& out, size_t seq, int64_t first, int64_t n) {
  const float* r = out.row(seq, first);
  return std::vector<float>(r, r + n * out.n_vocab);
}

TEST(CudaRollback, SpeculativeChunksRolledBackEqualTheKeptTokensAlone) {
  DS4_REQUIRE_GPU();
  const auto m = load_model(test::binary_dir() + "/models/tiny-q2.gguf");
  const ModelConfig& c = m->config;
  CudaBackend gpu(c, m->weights);
  ASSERT_TRUE(gpu.supports_rollback());
  std::mt19937 rng(11);
  auto token = [&] { return static_cast<int32_t>(100 + rng() % 50000); };
  auto spec_a = gpu.new_sequence(), spec_b = gpu.new_sequence(), ref_a = gpu.new_sequence(), ref_b = gpu.new_sequence();
  SequenceKv* spec[2] = {spec_a.get(), spec_b.get()};
  SequenceKv* ref[2] = {ref_a.get(), ref_b.get()};
  for (int s = 0; s < 2; ++s) {  // prompts of 37 and 42 tokens
    std::vector<int32_t> prompt(37 + 5 * s);
    for (auto& t : prompt) t = token();
    for (SequenceKv* kv : {spec[s], ref[s]}) {
      ForwardBatch b;
      b.sequences.push_back({kv, prompt});
      gpu.forward(b);
    }
  }
  double worst = 0;
  int rolled_back = 0;
  for (int round = 0; round < 70; ++round) {
    std::vector<int32_t> fed[2];
    int64_t keep[2];
    ForwardBatch b;
    for (int s = 0; s < 2; ++s) {
      for (int i = 0; i < 4; ++i) fed[s].push_back(token());
      keep[s] = 1 + (round * (s + 1) + s) % 4;  // 1..4 kept of 4
      b.sequences.push_back({spec[s], fed[s], true, true});
    }
    const ForwardOutput out = gpu.forward(b);
    std::vector<float> got[2];
    for (int s = 0; s < 2; ++s) got[s] = rows_of(out, s, 0, keep[s]);
    for (int s = 0; s < 2; ++s) {
      const int64_t end = spec[s]->num_tokens() - 4 + keep[s];
      gpu.rollback(*spec[s], end);
      rolled_back += keep[s] < 4;
      ASSERT_EQ(spec[s]->num_tokens(), end);
    }
    for (int s = 0; s < 2; ++s) {
      ForwardBatch r;
      r.sequences.push_back({ref[s], std::span<const int32_t>(fed[s]).first(keep[s]), true});
      const ForwardOutput want = gpu.forward(r);
      const std::vector<float> w = rows_of(want, 0, 0, keep[s]);
      worst = std::max(worst, test::max_rel_error(got[s], w));
      ASSERT_LT(test::max_rel_error(got[s], w), 1e-5) << "round " << round << " sequence " << s;
    }
  }
  // Multi-token speculative steps are never graph-replayed: every rollback used the undo log.
  EXPECT_EQ(gpu.rollback_counts().undone, rolled_back);
  EXPECT_EQ(gpu.rollback_counts().refed, 0);
  std::printf("[ gpu ] rollback: 70 rounds x 2 sequences (%d rolled back: %lld from the undo log, %lld re-fed), positions "
              "up to %lld: max rel. error %.3g against the kept tokens fed alone\n",
              rolled_back, (long long)gpu.rollback_counts().undone, (long long)gpu.rollback_counts().refed,
              (long long)spec[1]->num_tokens(), worst);
}

// Requests through the engine on the GPU; spec null: no speculation.
std::vector<std::vector<int32_t>> serve(Backend& gpu, PagedKvPool& pool, const ModelConfig& c,
                                        const std::vector<GenerationRequest>& requests, Speculator* spec) {
  return test::serve_through_engine(gpu, pool, c, requests, spec);
}

TEST(CudaRollback, SpeculativeEngineOnTheGpuEqualsThePlainOne) {
  DS4_REQUIRE_GPU();
  const auto m = load_model(test::binary_dir() + "/models/tiny-q2.gguf");
  const ModelConfig& c = m->config;
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 6; ++i) {
    GenerationRequest r;
    for (int t = 0; t < 3 + 53 * i; ++t) r.prompt_tokens.push_back((500 + 7919 * (t + 31 * i)) % c.n_vocab);
    r.max_tokens = 40;
    r.ignore_eos = true;
    r.sampling.temperature = 0.0f;
    requests.push_back(r);
  }
  auto make_pool = [&c] {
    const KvPoolLayout layout = cuda_kv_layout(c, 64, 8, 8);
    return std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layout, make_cuda_kv_storage(layout)));
  };
  auto plain_pool = make_pool();
  CudaBackendOptions o;
  o.kv_manager = &plain_pool->manager();
  CudaBackend plain_gpu(c, m->weights, o);
  const auto want = serve(plain_gpu, *plain_pool, c, requests, nullptr);

  const auto history = test::token_history(requests, want);  // prompt -> prompt + greedy tokens
  SpeculativeConfig sc;
  sc.max_draft = 3;
  sc.adaptive = false;
  sc.oracle_acceptance = 0.6;
  sc.oracle = [&history](const Sequence& seq, int64_t index) -> int32_t {
    const std::vector<int32_t> prompt(seq.tokens.begin(), seq.tokens.begin() + seq.num_prompt_tokens);
    const auto it = history.find(prompt);
    if (it == history.end() || index < 0 || index >= static_cast<int64_t>(it->second.size())) return -1;
    return it->second[static_cast<size_t>(index)];
  };
  auto spec_pool = make_pool();
  o.kv_manager = &spec_pool->manager();
  CudaBackend spec_gpu(c, m->weights, o);
  Speculator speculator(sc, spec_gpu, nullptr, c.n_vocab, -1);
  const auto got = serve(spec_gpu, *spec_pool, c, requests, &speculator);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(want[i].size(), 40u);
    EXPECT_EQ(got[i], want[i]) << "request " << i;
  }
  std::printf("[ gpu ] speculative engine on the GPU (oracle drafts, K = 3, 60%% accepted): %zu greedy requests "
              "token-identical to the plain engine\n", requests.size());
}

}  // namespace
}  // namespace ds4
