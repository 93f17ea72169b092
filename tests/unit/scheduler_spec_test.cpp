// Speculative decoding through the real Engine with fakes (spec_fakes.h): greedy outputs (and
// logprobs) are token for token those of the plain engine for every draft quality, K, input
// pairing and batch shape, with EOS / stop ids / max_tokens cutting accepted drafts, under
// preemption, with per-request opt-out and in oracle mode; the draft room respects the limits and
// never preempts; sampled outputs follow the target's exact joint distribution (fixed-seed
// chi-square over every 4-token continuation of a 4-token vocabulary, with and without sampling
// filters); the statistics add up.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "scheduler/engine.h"
#include "scheduler/speculator.h"
#include "spec_fakes.h"

namespace ds4::test {
namespace {

using namespace std::chrono_literals;

struct RunOptions {
  bool speculate = true;
  int vocab = 32;
  float spread = 8.0f;
  float noise = 0.0f;  // draft logits = target + noise * U[0,1)
  int max_draft = 3;
  bool adaptive = false;
  MtpPairing pairing = MtpPairing::kNextToken;
  bool use_draft_model = true;
  std::function<int32_t(const Sequence&, int64_t)> oracle;
  double oracle_acceptance = 1.0;
  int max_num_seqs = 64;
  int64_t blocks = 100000, block_tokens = 16;
  int32_t eos = -1;
};

struct RunResult {
  std::vector<std::vector<int32_t>> outputs;
  std::vector<std::vector<SampledLogprobs>> logprobs;
  std::vector<FinishReason> reasons;
  EngineStats stats;
  std::vector<StepStats> steps;
};

RunResult run(const std::vector<GenerationRequest>& requests, const RunOptions& o) {
  SpecFakeBackend backend(o.vocab, o.spread);
  auto pool = spec_fake_pool(o.blocks, o.block_tokens);
  SpecFakeDraft draft(o.vocab, o.spread, o.noise);
  SpeculativeConfig sc{.max_draft = o.max_draft, .adaptive = o.adaptive, .pairing = o.pairing, .oracle = o.oracle,
                       .oracle_acceptance = o.oracle_acceptance};
  std::unique_ptr<Speculator> spec;
  if (o.speculate) spec = std::make_unique<Speculator>(sc, backend, o.use_draft_model ? &draft : nullptr, o.vocab, o.eos);
  EngineConfig ec{.scheduler = {.max_num_seqs = o.max_num_seqs, .max_num_batched_tokens = 4096},
                  .context_length = 100000, .eos_token_id = o.eos, .n_vocab = o.vocab,
                  .max_queued_requests = requests.size() + 1};
  Engine engine(backend, *pool, ec, spec.get());
  RunResult r;
  engine.set_step_observer([&](const StepStats& s) { r.steps.push_back(s); });
  engine.start();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const GenerationRequest& q : requests) streams.push_back(engine.submit(q));
  for (auto& s : streams) {
    std::vector<int32_t> tokens;
    std::vector<SampledLogprobs> logprobs;
    StreamChunk c, last;
    while (!last.finished()) {
      if (!s->wait_for(c, 30s)) {
        ADD_FAILURE() << "request " << s->id() << " timed out";
        break;
      }
      tokens.insert(tokens.end(), c.tokens.begin(), c.tokens.end());
      logprobs.insert(logprobs.end(), c.logprobs.begin(), c.logprobs.end());
      last = c;
      if (last.finished()) EXPECT_EQ(last.usage.completion_tokens, int64_t(tokens.size()));
    }
    r.outputs.push_back(tokens);
    r.logprobs.push_back(std::move(logprobs));
    r.reasons.push_back(last.finish_reason);
  }
  engine.stop();
  r.stats = engine.stats();
  return r;
}

std::vector<GenerationRequest> greedy_requests(int n, int vocab, uint32_t seed) {
  std::vector<GenerationRequest> out(n);
  for (int i = 0; i < n; ++i) {
    GenerationRequest& r = out[i];
    const int len = 1 + int(spec_mix(seed + i) % 40);
    for (int k = 0; k < len; ++k) r.prompt_tokens.push_back(int32_t(spec_mix(seed * 977 + i * 31 + k) % vocab));
    r.max_tokens = 1 + int(spec_mix(seed + 3 * i) % 24);
    r.sampling.temperature = 0.0f;
    r.ignore_eos = i % 3 == 0;
    if (i % 5 == 1) r.stop_token_ids = {int32_t(i % vocab)};
  }
  return out;
}

void expect_same(const RunResult& a, const RunResult& b) {
  ASSERT_EQ(a.outputs.size(), b.outputs.size());
  for (size_t i = 0; i < a.outputs.size(); ++i) {
    EXPECT_EQ(a.outputs[i], b.outputs[i]) << "request " << i;
    EXPECT_EQ(a.reasons[i], b.reasons[i]) << "request " << i;
  }
}

void expect_stats_add_up(const RunResult& r) {
  uint64_t drafts = 0, draft_tokens = 0, accepted = 0, generated = 0;
  for (const StepStats& s : r.steps) {
    drafts += s.spec_drafts;
    draft_tokens += s.spec_draft_tokens;
    accepted += s.spec_accepted_tokens;
    generated += s.num_sampled;
    int64_t per_position = 0;
    for (size_t j = 0; j < s.spec_accepted_per_position.size(); ++j) {
      per_position += s.spec_accepted_per_position[j];
      if (j > 0) EXPECT_LE(s.spec_accepted_per_position[j], s.spec_accepted_per_position[j - 1]);
    }
    EXPECT_EQ(per_position, s.spec_accepted_tokens);
    EXPECT_LE(s.spec_accepted_tokens, s.spec_draft_tokens);
  }
  EXPECT_EQ(drafts, r.stats.spec_drafts);
  EXPECT_EQ(draft_tokens, r.stats.spec_draft_tokens);
  EXPECT_EQ(accepted, r.stats.spec_accepted_tokens);
  uint64_t outputs = 0;
  for (const auto& o : r.outputs) outputs += o.size();
  EXPECT_EQ(generated, outputs);  // tokens after a stop are never counted nor streamed
  EXPECT_EQ(r.stats.generation_tokens, outputs);
}

TEST(Speculation, GreedyMatchesPlainForEveryDraftQualityKAndPairing) {
  RunOptions plain{.speculate = false, .eos = 7};
  const std::vector<GenerationRequest> reqs = greedy_requests(24, plain.vocab, 5);
  const RunResult reference = run(reqs, plain);
  for (float noise : {0.0f, 3.0f, 1000.0f})
    for (int k : {1, 3, 6})
      for (MtpPairing pairing : {MtpPairing::kNextToken, MtpPairing::kSameToken})
        for (int seqs : {1, 64}) {
          SCOPED_TRACE("noise " + std::to_string(noise) + " k " + std::to_string(k) + " pairing " + pairing_name(pairing) +
                       " seqs " + std::to_string(seqs));
          RunOptions o{.noise = noise, .max_draft = k, .pairing = pairing, .max_num_seqs = seqs, .eos = 7};
          const RunResult r = run(reqs, o);
          expect_same(reference, r);
          expect_stats_add_up(r);
          EXPECT_GT(r.stats.spec_draft_tokens, 0u);
          if (noise == 0.0f && pairing == MtpPairing::kNextToken)  // drafts are the target's own choices
            EXPECT_EQ(r.stats.spec_accepted_tokens, r.stats.spec_draft_tokens);
        }
}

TEST(Speculation, GreedyMatchesPlainUnderPreemptionAndAdaptiveK) {
  RunOptions plain{.speculate = false, .max_num_seqs = 8, .blocks = 12, .block_tokens = 8, .eos = 7};
  const std::vector<GenerationRequest> reqs = greedy_requests(20, plain.vocab, 11);
  const RunResult reference = run(reqs, plain);
  RunOptions o = plain;
  o.speculate = true;
  o.noise = 2.0f;
  o.max_draft = 4;
  const RunResult r = run(reqs, o);
  EXPECT_GT(r.stats.preemptions, 0u);
  expect_same(reference, r);
  expect_stats_add_up(r);
  o.adaptive = true;
  expect_same(reference, run(reqs, o));
}

// Accepted drafts carry the logprobs of their own verification row: the same as the plain run's.
TEST(Speculation, LogprobsOfAcceptedDraftsMatchPlain) {
  RunOptions plain{.speculate = false};
  std::vector<GenerationRequest> reqs = greedy_requests(8, plain.vocab, 41);
  for (auto& r : reqs) {
    r.logprobs = true;
    r.top_logprobs = 3;
  }
  const RunResult reference = run(reqs, plain);
  const RunResult r = run(reqs, RunOptions{.noise = 1.0f, .max_draft = 3});
  expect_same(reference, r);
  EXPECT_GT(r.stats.spec_accepted_tokens, 0u);
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_EQ(r.logprobs[i].size(), r.outputs[i].size());
    ASSERT_EQ(reference.logprobs[i].size(), r.logprobs[i].size());
    for (size_t t = 0; t < r.logprobs[i].size(); ++t) {
      EXPECT_EQ(r.logprobs[i][t].logprob, reference.logprobs[i][t].logprob);
      ASSERT_EQ(r.logprobs[i][t].top.size(), 3u);
      for (int k = 0; k < 3; ++k) EXPECT_EQ(r.logprobs[i][t].top[k].token, reference.logprobs[i][t].top[k].token);
    }
  }
}

TEST(Speculation, PerRequestOptOut) {
  RunOptions plain{.speculate = false};
  std::vector<GenerationRequest> reqs = greedy_requests(10, plain.vocab, 21);
  for (auto& r : reqs) r.speculative = false;
  const RunResult reference = run(reqs, plain);
  RunOptions o{.noise = 0.0f};
  const RunResult none = run(reqs, o);
  expect_same(reference, none);
  EXPECT_EQ(none.stats.spec_draft_tokens, 0u);
  reqs[3].speculative = true;  // only this one drafts
  const RunResult one = run(reqs, o);
  expect_same(reference, one);
  EXPECT_GT(one.stats.spec_draft_tokens, 0u);
  EXPECT_LE(one.stats.spec_drafts, uint64_t(reqs[3].max_tokens));
}

TEST(Speculation, OracleForcesTheChosenAcceptance) {
  RunOptions plain{.speculate = false};
  const std::vector<GenerationRequest> reqs = greedy_requests(16, plain.vocab, 31);
  const RunResult reference = run(reqs, plain);
  // The oracle knows each request's reference output (prompts identify requests).
  std::map<std::vector<int32_t>, std::vector<int32_t>> truth;
  for (size_t i = 0; i < reqs.size(); ++i) truth[reqs[i].prompt_tokens] = reference.outputs[i];
  auto oracle = [&](const Sequence& seq, int64_t index) -> int32_t {
    const auto it = truth.find(std::vector<int32_t>(seq.tokens.begin(), seq.tokens.begin() + seq.num_prompt_tokens));
    const int64_t g = index - seq.num_prompt_tokens;
    return it == truth.end() || g < 0 || g >= int64_t(it->second.size()) ? -1 : it->second[g];
  };
  double last_rate = -1;
  for (double acceptance : {0.0, 0.5, 1.0}) {
    for (bool model : {false, true}) {
      RunOptions o{.noise = 1000.0f, .max_draft = 4, .use_draft_model = model, .oracle = oracle, .oracle_acceptance = acceptance};
      const RunResult r = run(reqs, o);
      expect_same(reference, r);
      expect_stats_add_up(r);
      ASSERT_GT(r.stats.spec_draft_tokens, 0u);
      const double rate = double(r.stats.spec_accepted_tokens) / double(r.stats.spec_draft_tokens);
      if (acceptance == 0.0) EXPECT_EQ(r.stats.spec_accepted_tokens, 0u);
      if (acceptance == 1.0) EXPECT_EQ(r.stats.spec_accepted_tokens, r.stats.spec_draft_tokens);
      if (!model) EXPECT_GT(rate, last_rate);
      if (!model) last_rate = rate;
    }
  }
}

// Room for drafts: within max_tokens, max_model_len and the step budget, only for requests that
// allow it, and never by preempting another sequence (drafts are optional).
TEST(Speculation, DraftRoomRespectsLimitsAndNeverPreempts) {
  auto pool = spec_fake_pool(/*blocks=*/5, /*block_tokens=*/4);
  Scheduler sched(SchedulerConfig{.max_num_seqs = 8, .max_num_batched_tokens = 64, .max_model_len = 100}, *pool, -1);
  auto add = [&](RequestId id, int prompt_len, int64_t max_tokens, bool speculative) {
    auto seq = std::make_unique<Sequence>();
    seq->id = id;
    for (int i = 0; i < prompt_len; ++i) seq->tokens.push_back(i % 7);
    seq->request.max_tokens = max_tokens;
    seq->request.sampling.temperature = 0.0f;
    seq->request.speculative = speculative;
    sched.add(std::move(seq));
  };
  add(1, 7, 10, true);   // 2 blocks for 8 positions: 4 more drafts need a third block
  add(2, 7, 2, true);    // max_tokens 2: after its first token, at most 0 drafts
  add(3, 3, 10, false);  // opted out
  ScheduledBatch prefill = sched.schedule(4);
  ASSERT_EQ(prefill.entries.size(), 3u);
  for (const auto& e : prefill.entries) EXPECT_EQ(e.max_drafts, 0);  // prefills never draft
  std::vector<SampledToken> first(3);
  for (auto& t : first) t.token = 1;
  for (auto& e : prefill.entries) dynamic_cast<SpecFakeKv&>(pool->kv(e.seq->id)).history.assign(e.num_tokens, 0);
  sched.update(prefill, first);
  // 5 blocks: seq 1 holds 2, seq 2 holds 2, seq 3 holds 1 -> no block left for seq 1's drafts.
  ScheduledBatch step = sched.schedule(4);
  ASSERT_EQ(step.entries.size(), 3u);
  EXPECT_EQ(step.num_preempted, 0);
  for (const auto& e : step.entries) EXPECT_EQ(e.max_drafts, 0) << "sequence " << e.seq->id;
  EXPECT_EQ(step.num_tokens, 3);
}

// Drafts reserved for a decode of a sequence with a 3-token prompt and its first token sampled.
int64_t drafts_reserved(int64_t max_batched_tokens, int64_t max_model_len, int64_t max_tokens, int k) {
  auto pool = spec_fake_pool(100, 4);
  Scheduler sched(SchedulerConfig{.max_num_seqs = 8, .max_num_batched_tokens = max_batched_tokens, .max_model_len = max_model_len},
                  *pool, -1);
  auto seq = std::make_unique<Sequence>();
  seq->id = 1;
  seq->tokens.assign(3, 5);
  seq->request.max_tokens = max_tokens;
  seq->request.sampling.temperature = 0.0f;
  sched.add(std::move(seq));
  ScheduledBatch prefill = sched.schedule(k);
  EXPECT_EQ(prefill.entries.size(), 1u);
  dynamic_cast<SpecFakeKv&>(pool->kv(1)).history.assign(3, 0);
  std::vector<SampledToken> first(1);
  first[0].token = 1;
  sched.update(prefill, first);
  const ScheduledBatch step = sched.schedule(k);
  EXPECT_EQ(step.num_tokens, 1);  // drafts are counted when drafted, not when reserved
  return step.entries.at(0).max_drafts;
}

TEST(Speculation, DraftRoomWithinLimitsAndBudget) {
  EXPECT_EQ(drafts_reserved(64, 100, 10, 6), 6);
  EXPECT_EQ(drafts_reserved(64, 100, 10, 0), 0);
  EXPECT_EQ(drafts_reserved(64, 100, 4, 6), 2);  // 1 generated, 1 next: 2 more at most
  EXPECT_EQ(drafts_reserved(64, 7, 10, 6), 2);   // 4 positions used, 7 allowed: next + 2
  EXPECT_EQ(drafts_reserved(4, 100, 10, 6), 3);  // budget 4: the token and 3 drafts
}

// Pearson chi-square of counts against expected probabilities, cells with expected < 5 merged.
double chi_square(const std::map<std::vector<int32_t>, int>& counts, const std::map<std::vector<int32_t>, double>& probs,
                  int n, int& dof) {
  double chi2 = 0, small_expected = 0, small_got = 0;
  int cells = 0;
  for (const auto& [seq, p] : probs) {
    const double expected = p * n;
    const auto it = counts.find(seq);
    const double got = it == counts.end() ? 0 : it->second;
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
  for (const auto& [seq, c] : counts) EXPECT_GT(probs.count(seq), 0u) << "an impossible continuation was sampled";
  dof = cells - 1;
  return chi2;
}

TEST(Speculation, SampledOutputsFollowTheTargetDistribution) {
  const int n = 24000, vocab = 4, len = 4;
  const float spread = 2.5f;
  const std::vector<int32_t> prompt{1, 2, 3, 0, 2};
  for (const SamplingParams& sp : {SamplingParams{.temperature = 1.0f},
                                   SamplingParams{.temperature = 0.8f, .top_p = 0.9f, .min_p = 0.1f}}) {
    SCOPED_TRACE("temperature " + std::to_string(sp.temperature));
    std::vector<GenerationRequest> reqs(n);
    for (int i = 0; i < n; ++i) {
      reqs[i].prompt_tokens = prompt;
      reqs[i].max_tokens = len;
      reqs[i].sampling = sp;
      reqs[i].sampling.seed = 100000 + uint64_t(i);
    }
    RunOptions o{.vocab = vocab, .spread = spread, .noise = 2.0f, .max_draft = 3, .max_num_seqs = 2048};
    const RunResult r = run(reqs, o);
    std::map<std::vector<int32_t>, int> counts;
    for (const auto& out : r.outputs) counts[out] += 1;
    std::map<std::vector<int32_t>, double> probs;
    std::vector<int32_t> prefix = prompt, tail;
    target_continuations(prefix, len, vocab, spread, sp, 1.0, tail, probs);
    int dof = 0;
    const double chi2 = chi_square(counts, probs, n, dof);
    // Critical value at p = 0.001 (Wilson-Hilferty); fixed seeds make the outcome fixed too.
    const double z = 3.0902, a = 2.0 / (9.0 * dof);
    EXPECT_LT(chi2, dof * std::pow(1 - a + z * std::sqrt(a), 3)) << "dof " << dof;
    // Both paths were exercised: some drafts accepted, some rejected.
    const double rate = double(r.stats.spec_accepted_tokens) / double(r.stats.spec_draft_tokens);
    EXPECT_GT(rate, 0.15);
    EXPECT_LT(rate, 0.9);
  }
}

}  // namespace
}  // namespace ds4::test
