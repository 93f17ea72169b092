// MTP speculative decoding end to end on the demo model (CPU backend, paged KV pool, the synthetic
// MTP file, ratio-4 and ratio-128 layers, window 32): greedy outputs are token for token those of a
// plain run of each request alone, batched and one at a time, with the MTP drafting (next- and
// same-token pairing; its random weights are rejected almost always, so nearly every step rolls
// back) and with oracle drafts accepted at 70% (partial acceptance at every offset); prompts end
// mid-window and decoding crosses ratio-4, ratio-128 and 256-token block boundaries. Seeded
// sampling with oracle drafts follows the target's exact distribution of 3-token continuations
// (fixed-seed chi-square against probabilities computed from the model). Kept short (CI time).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "engine/cpu_backend.h"
#include "engine/kv_geometry.h"
#include "engine/model.h"
#include "engine/mtp_draft.h"
#include "scheduler/engine.h"
#include "scheduler/paged_kv_pool.h"

namespace ds4 {
namespace {

using namespace std::chrono_literals;

struct Demo {
  std::unique_ptr<Model> model = load_model(std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf");
  std::unique_ptr<MtpModule> mtp = load_mtp(std::string(DS4_BINARY_DIR) + "/models/tiny-q2-mtp.gguf", model->config);
  CpuBackend backend{model->config, model->weights};
  CpuMtpDraftModel draft{backend, model->config, mtp->weights};
};

Demo& demo() {
  static Demo d;
  return d;
}

std::vector<int32_t> random_tokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(100 + rng() % 100000);
  return t;
}

// The request alone without the scheduler: prefill, then token by token.
std::vector<int32_t> alone(const GenerationRequest& r) {
  Demo& d = demo();
  ContiguousKv kv(d.model->config);
  ForwardBatch batch;
  batch.sequences.push_back({&kv, r.prompt_tokens, false});
  ForwardOutput fo = d.backend.forward(batch);
  std::vector<int32_t> out;
  for (int64_t i = 0; i < r.max_tokens; ++i) {
    out.push_back(sample_token({fo.row(0), size_t(fo.n_vocab)}, r.sampling, uint64_t(i)));
    batch.sequences[0].tokens = std::span<const int32_t>(&out.back(), 1);
    fo = d.backend.forward(batch);
  }
  return out;
}

struct Outcome {
  std::vector<std::vector<int32_t>> outputs;
  EngineStats stats;
};

Outcome run_engine(const std::vector<GenerationRequest>& requests, SpeculativeConfig config, bool with_mtp, int max_num_seqs) {
  Demo& d = demo();
  const ModelConfig& c = d.model->config;
  PagedKvPool pool(std::make_unique<KvCacheManager>(layout_kv_pool(kv_geometry(c), KvLayout::kF32, 48, 64, 16)));
  Speculator spec(std::move(config), d.backend, with_mtp ? &d.draft : nullptr, c.n_vocab, -1);
  Engine engine(d.backend, pool,
                EngineConfig{.scheduler = {.max_num_seqs = max_num_seqs, .max_num_batched_tokens = 1024},
                             .context_length = c.context_length, .eos_token_id = -1, .n_vocab = c.n_vocab,
                             .max_queued_requests = requests.size() + 1},
                &spec);
  engine.start();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const GenerationRequest& r : requests) streams.push_back(engine.submit(r));
  Outcome o;
  for (auto& s : streams) {
    std::vector<int32_t> tokens;
    StreamChunk c2, last;
    while (!last.finished()) {
      if (!s->wait_for(c2, 120s)) {
        ADD_FAILURE() << "request " << s->id() << " timed out";
        break;
      }
      tokens.insert(tokens.end(), c2.tokens.begin(), c2.tokens.end());
      last = c2;
    }
    o.outputs.push_back(tokens);
  }
  engine.stop();
  o.stats = engine.stats();
  EXPECT_EQ(pool.manager().check_invariants(), "");
  return o;
}

struct GreedySet {
  std::vector<GenerationRequest> requests;
  std::vector<std::vector<int32_t>> expected;
  std::map<std::vector<int32_t>, std::vector<int32_t>> by_prompt;
};

const GreedySet& greedy_set() {
  static const GreedySet set = [] {
    GreedySet s;
    // Mid ratio-4 window, before and across the ratio-128 window end, across the 256-token block.
    for (int len : {29, 62, 126, 130, 251}) {
      GenerationRequest r;
      r.prompt_tokens = random_tokens(len, uint32_t(len));
      r.max_tokens = 9;
      r.ignore_eos = true;
      r.sampling.temperature = 0.0f;
      s.expected.push_back(alone(r));
      s.by_prompt[r.prompt_tokens] = s.expected.back();
      s.requests.push_back(std::move(r));
    }
    return s;
  }();
  return set;
}

// The oracle: a request's reference output (requests are told apart by their prompts).
std::function<int32_t(const Sequence&, int64_t)> reference_oracle(const std::map<std::vector<int32_t>, std::vector<int32_t>>& m) {
  return [&m](const Sequence& seq, int64_t index) -> int32_t {
    const auto it = m.find(std::vector<int32_t>(seq.tokens.begin(), seq.tokens.begin() + seq.num_prompt_tokens));
    const int64_t g = index - seq.num_prompt_tokens;
    return it == m.end() || g < 0 || g >= int64_t(it->second.size()) ? -1 : it->second[g];
  };
}

TEST(MtpDemo, GreedyWithMtpDraftsMatchesAloneRuns) {
  const GreedySet& s = greedy_set();
  for (MtpPairing pairing : {MtpPairing::kNextToken, MtpPairing::kSameToken}) {
    SCOPED_TRACE(pairing_name(pairing));
    const Outcome o = run_engine(s.requests, {.max_draft = 3, .adaptive = false, .pairing = pairing}, true, 64);
    for (size_t i = 0; i < s.requests.size(); ++i) EXPECT_EQ(o.outputs[i], s.expected[i]) << "request " << i;
    EXPECT_GT(o.stats.spec_draft_tokens, 0u);
  }
}

TEST(MtpDemo, GreedyWithOracleDraftsMatchesAloneRunsBatchedAndSingle) {
  const GreedySet& s = greedy_set();
  for (int seqs : {64, 1}) {
    SCOPED_TRACE("max_num_seqs " + std::to_string(seqs));
    const Outcome o = run_engine(s.requests,
                                 {.max_draft = 4, .adaptive = false, .oracle = reference_oracle(s.by_prompt), .oracle_acceptance = 0.7},
                                 seqs == 1, seqs);
    for (size_t i = 0; i < s.requests.size(); ++i) EXPECT_EQ(o.outputs[i], s.expected[i]) << "request " << i;
    EXPECT_GT(o.stats.spec_accepted_tokens, 0u);
    EXPECT_LT(o.stats.spec_accepted_tokens, o.stats.spec_draft_tokens);
  }
}

// Seeded sampling with top-k 2 over 3 tokens: 8 continuations whose probabilities come from the
// model itself; oracle drafts (the greedy path, accepted by the rule with probability p(draft))
// exercise acceptance, rejection with the residual and the bonus draw.
TEST(MtpDemo, SampledContinuationsFollowTheModel) {
  Demo& d = demo();
  const ModelConfig& c = d.model->config;
  const std::vector<int32_t> prompt = random_tokens(11, 5);
  const SamplingParams sp{.temperature = 1.0f, .top_k = 2};
  std::map<std::vector<int32_t>, double> probs;
  // p(t1) p(t2 | t1) p(t3 | t1 t2) from plain forwards.
  std::function<void(std::vector<int32_t>&, double, std::vector<int32_t>&)> expand = [&](std::vector<int32_t>& ctx, double p,
                                                                                          std::vector<int32_t>& tail) {
    if (tail.size() == 3) {
      probs[tail] = p;
      return;
    }
    ContiguousKv kv(c);
    ForwardBatch b;
    b.sequences.push_back({&kv, ctx, false});
    const ForwardOutput fo = d.backend.forward(b);
    const TokenDistribution dist = sampling_distribution({fo.row(0), size_t(fo.n_vocab)}, sp);
    for (size_t i = 0; i < dist.ids.size(); ++i) {
      ctx.push_back(dist.ids[i]);
      tail.push_back(dist.ids[i]);
      expand(ctx, p * dist.weights[i] / dist.total, tail);
      ctx.pop_back();
      tail.pop_back();
    }
  };
  std::vector<int32_t> ctx = prompt, tail;
  expand(ctx, 1.0, tail);
  ASSERT_EQ(probs.size(), 8u);
  // The oracle drafts each request's most likely path.
  std::map<std::vector<int32_t>, std::vector<int32_t>> greedy_path;
  {
    GenerationRequest g;
    g.prompt_tokens = prompt;
    g.max_tokens = 3;
    g.sampling.temperature = 0.0f;
    greedy_path[prompt] = alone(g);
  }
  const int n = 128;
  std::vector<GenerationRequest> reqs(n);
  for (int i = 0; i < n; ++i) {
    reqs[i].prompt_tokens = prompt;
    reqs[i].max_tokens = 3;
    reqs[i].ignore_eos = true;
    reqs[i].sampling = sp;
    reqs[i].sampling.seed = 7000 + uint64_t(i);
  }
  const Outcome o = run_engine(reqs, {.max_draft = 2, .adaptive = false, .oracle = reference_oracle(greedy_path)}, false, 64);
  std::map<std::vector<int32_t>, int> counts;
  for (const auto& out : o.outputs) counts[out] += 1;
  double chi2 = 0, small_expected = 0, small_got = 0;
  int cells = 0;
  for (const auto& [seq, p] : probs) {
    const double expected = p * n, got = counts.count(seq) ? counts[seq] : 0;
    if (expected < 5) {
      small_expected += expected;
      small_got += got;
      continue;
    }
    chi2 += (got - expected) * (got - expected) / expected;
    ++cells;
  }
  if (small_expected > 0) {
    chi2 += (small_got - small_expected) * (small_got - small_expected) / small_expected;
    ++cells;
  }
  for (const auto& [seq, k] : counts) EXPECT_TRUE(probs.count(seq)) << "impossible continuation";
  // Critical values at p = 0.001 for 1..7 degrees of freedom; the seeds are fixed.
  const double kCritical[8] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32};
  ASSERT_GE(cells, 2);
  EXPECT_LT(chi2, kCritical[cells - 1]) << cells << " cells";
  EXPECT_GT(o.stats.spec_accepted_tokens, 0u);
  EXPECT_LT(o.stats.spec_accepted_tokens, o.stats.spec_draft_tokens);
}

}  // namespace
}  // namespace ds4
