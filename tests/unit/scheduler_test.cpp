// Scheduler scenario tests with a fake backend and pool (no model): the step budget and
// max_num_seqs hold, decodes keep going during a flood of long prompts, preemption by recompute
// picks the newest / lowest-priority sequence, re-queues it at the front and resumes it exactly,
// aborts free every block, finish reasons, and prefix-cache hits. Every scenario also checks that
// each request's tokens equal those of the same request run alone.
#include <gtest/gtest.h>

#include <random>

#include "scheduler_fakes.h"

namespace ds4::test {
namespace {

std::vector<RequestId> ids_of(const std::vector<Sequence*>& seqs) {
  std::vector<RequestId> ids;
  for (const Sequence* s : seqs) ids.push_back(s->id);
  return ids;
}

bool in_batch(const ScheduledBatch& b, const Sequence* s) {
  return std::any_of(b.entries.begin(), b.entries.end(), [&](const auto& e) { return e.seq == s; });
}

// The invariants every plan must satisfy.
void check_plan(const Scheduler& sched, const ScheduledBatch& b) {
  const SchedulerConfig& c = sched.config();
  int64_t sum = 0;
  std::set<const Sequence*> seen;
  for (const ScheduledSequence& e : b.entries) {
    ASSERT_TRUE(seen.insert(e.seq).second) << "sequence planned twice";
    ASSERT_GE(e.num_tokens, 1);
    ASSERT_EQ(e.start, e.seq->num_computed_tokens);
    ASSERT_LE(e.start + e.num_tokens, e.seq->num_tokens());
    if (c.max_prefill_chunk_tokens > 0) {
      ASSERT_LE(e.num_tokens, c.max_prefill_chunk_tokens);
    }
    ASSERT_TRUE(e.seq->admitted);
    sum += e.num_tokens;
  }
  ASSERT_EQ(sum, b.num_tokens);
  ASSERT_EQ(b.prefill_tokens + b.decode_tokens, b.num_tokens);
  ASSERT_LE(b.num_tokens, c.max_num_batched_tokens);
  ASSERT_LE(sched.num_running(), static_cast<size_t>(c.max_num_seqs));
}

TEST(Scheduler, BudgetAndMaxSeqsHoldAndOutputsMatchAlone) {
  FakePool pool(10000, 16);
  const SchedulerConfig config{.max_num_seqs = 6, .max_num_batched_tokens = 64, .max_prefill_chunk_tokens = 40,
                               .max_model_len = 100000};
  Driver d(config, pool);
  std::mt19937 rng(7);
  std::map<RequestId, RequestSpec> specs;
  for (RequestId id = 1; id <= 40; ++id) {
    RequestSpec s;
    s.prompt_len = 1 + static_cast<int>(rng() % 300);
    s.max_tokens = 1 + rng() % 24;
    s.first_token = static_cast<int32_t>(id * 3);
    if (id % 2) {
      s.temperature = 0.8f;
      s.seed = id * 11;
    }
    specs[id] = s;
  }
  RequestId next = 1;
  int steps_with_prefill = 0;
  for (int step = 0; step < 100000 && (next <= 40 || !d.scheduler().empty()); ++step) {
    // Arrivals while running: a few at a time.
    for (int k = 0; k < 3 && next <= 40 && step % 4 == 0; ++k, ++next) d.add(next, specs[next]);
    if (d.scheduler().empty()) continue;
    const std::vector<Sequence*> running_before = d.scheduler().running();
    ASSERT_TRUE(d.step([&](const ScheduledBatch& b) {
      check_plan(d.scheduler(), b);
      // Running-first: with max_num_seqs <= budget, every running decode is in the step.
      for (Sequence* s : running_before)
        if (s->num_tokens() - s->num_computed_tokens == 1) {
          ASSERT_TRUE(in_batch(b, s)) << "decode of " << s->id << " skipped";
        }
      steps_with_prefill += b.prefill_tokens > 0;
    }));
  }
  ASSERT_TRUE(d.scheduler().empty());
  EXPECT_GT(steps_with_prefill, 10);
  for (const auto& [id, spec] : specs) {
    const Finished alone = run_alone(spec);
    EXPECT_EQ(d.finished.at(id).output, alone.output) << "request " << id;
    EXPECT_EQ(d.finished.at(id).reason, FinishReason::kLength);
    EXPECT_EQ(d.finished.at(id).output.size(), static_cast<size_t>(spec.max_tokens));
  }
  EXPECT_EQ(pool.usage().used_blocks, 0);
  EXPECT_EQ(pool.num_sequences(), 0u);
}

// A flood of long prompts arrives while short requests decode: the decodes get a token every step,
// each step stays within the budget (so a prompt stalls them by at most one bounded chunk), and the
// long prompts are admitted in arrival order.
TEST(Scheduler, DecodesProgressEveryStepDuringLongPromptFlood) {
  FakePool pool(100000, 16);
  const SchedulerConfig config{.max_num_seqs = 32, .max_num_batched_tokens = 96, .max_prefill_chunk_tokens = 64,
                               .max_model_len = 100000};
  Driver d(config, pool);
  for (RequestId id = 1; id <= 4; ++id) d.add(id, {.prompt_len = 8, .max_tokens = 60, .first_token = int32_t(id)});
  ASSERT_TRUE(d.step());  // all four prefilled in one step
  for (RequestId id = 10; id < 22; ++id) d.add(id, {.prompt_len = 600, .max_tokens = 2, .first_token = int32_t(id)});
  std::vector<RequestId> admission_order;
  std::map<RequestId, int64_t> generated;
  while (!d.scheduler().empty()) {
    std::vector<Sequence*> shorts;
    for (Sequence* s : d.scheduler().running())
      if (s->id <= 4) shorts.push_back(s);
    for (Sequence* s : shorts) generated[s->id] = s->num_generated();
    ASSERT_TRUE(d.step([&](const ScheduledBatch& b) {
      check_plan(d.scheduler(), b);
      for (Sequence* s : shorts) ASSERT_TRUE(in_batch(b, s)) << "short request " << s->id << " stalled";
      for (const auto& e : b.entries)
        if (e.seq->id >= 10 && e.start == 0) admission_order.push_back(e.seq->id);
    }));
    for (const auto& [id, before] : generated) {
      if (d.finished.count(id)) continue;  // its Sequence is gone
      const auto& run = d.scheduler().running();
      auto it = std::find_if(run.begin(), run.end(), [&, id = id](Sequence* s) { return s->id == id; });
      ASSERT_NE(it, run.end());
      ASSERT_EQ((*it)->num_generated(), before + 1);
    }
    generated.clear();
  }
  std::vector<RequestId> expected;
  for (RequestId id = 10; id < 22; ++id) expected.push_back(id);
  EXPECT_EQ(admission_order, expected);
  EXPECT_EQ(d.finished.size(), 16u);
  for (RequestId id = 1; id <= 4; ++id) EXPECT_EQ(d.finished.at(id).output.size(), 60u);
}

// A pool far too small for the work: sequences are preempted (always the newest running one),
// go back to the front of the queue, and finish with exactly the tokens they produce alone.
TEST(Scheduler, PreemptionPicksNewestRequeuesAtFrontAndResumesExactly) {
  FakePool pool(12, 8);  // 96 positions in all
  const SchedulerConfig config{.max_num_seqs = 8, .max_num_batched_tokens = 32, .max_model_len = 96};
  Driver d(config, pool);
  std::map<RequestId, RequestSpec> specs;
  for (RequestId id = 1; id <= 8; ++id) {
    specs[id] = {.prompt_len = 10 + int(id) * 3, .max_tokens = 30, .temperature = id % 2 ? 0.0f : 1.0f,
                 .seed = id, .first_token = int32_t(id * 5)};
    d.add(id, specs[id]);
  }
  int preemptions = 0;
  while (!d.scheduler().empty()) {
    const std::vector<RequestId> before = ids_of(d.scheduler().running());
    ASSERT_TRUE(d.step([&](const ScheduledBatch& b) {
      check_plan(d.scheduler(), b);
      if (b.num_preempted == 0) return;
      preemptions += b.num_preempted;
      ASSERT_LE(static_cast<size_t>(b.num_preempted), before.size());
      const std::vector<RequestId> victims(before.end() - b.num_preempted, before.end());
      const std::vector<RequestId> waiting = ids_of(d.scheduler().waiting());
      ASSERT_GE(waiting.size(), victims.size());
      const std::vector<RequestId> front(waiting.begin(), waiting.begin() + b.num_preempted);
      EXPECT_EQ(front, victims) << "preempted sequences are the newest and wait at the front";
      for (Sequence* w : d.scheduler().waiting()) EXPECT_EQ(w->num_computed_tokens, 0);
    }));
    ASSERT_LE(pool.usage().used_blocks, pool.usage().total_blocks);
  }
  EXPECT_GT(preemptions, 3);
  int32_t preempted_requests = 0;
  for (const auto& [id, spec] : specs) {
    EXPECT_EQ(d.finished.at(id).output, run_alone(spec).output) << "request " << id;
    preempted_requests += d.finished.at(id).usage.preemptions > 0;
  }
  EXPECT_GT(preempted_requests, 0);
  EXPECT_EQ(pool.usage().used_blocks, 0);
  EXPECT_EQ(pool.admissions, pool.releases);
}

// Priority: higher priority is admitted first and a lower-priority sequence is preempted even when
// it is older.
TEST(Scheduler, PriorityOrdersAdmissionAndPreemption) {
  FakePool pool(6, 8);  // 48 positions
  const SchedulerConfig config{.max_num_seqs = 4, .max_num_batched_tokens = 64, .max_model_len = 48};
  Driver d(config, pool);
  d.add(1, {.prompt_len = 8, .max_tokens = 30, .priority = 0, .first_token = 1});
  d.add(2, {.prompt_len = 8, .max_tokens = 30, .priority = 5, .first_token = 2});
  ASSERT_EQ(ids_of(d.scheduler().waiting()), (std::vector<RequestId>{2, 1}));
  std::vector<RequestId> first_admitted;
  ASSERT_TRUE(d.step([&](const ScheduledBatch& b) {
    for (const auto& e : b.entries) first_admitted.push_back(e.seq->id);
  }));
  EXPECT_EQ(first_admitted, (std::vector<RequestId>{2, 1}));
  // Both grow until the pool is full; the low-priority (older) one must be the victim.
  bool saw_preemption = false;
  while (!d.scheduler().empty() && !saw_preemption) {
    ASSERT_TRUE(d.step([&](const ScheduledBatch& b) {
      if (b.num_preempted == 0) return;
      saw_preemption = true;
      ASSERT_EQ(d.scheduler().waiting().front()->id, 1u);
      ASSERT_EQ(ids_of(d.scheduler().running()), (std::vector<RequestId>{2}));
    }));
  }
  EXPECT_TRUE(saw_preemption);
  d.run_to_end();
  EXPECT_EQ(d.finished.at(1).output, run_alone({.prompt_len = 8, .max_tokens = 30, .first_token = 1}).output);
  EXPECT_EQ(d.finished.at(2).output, run_alone({.prompt_len = 8, .max_tokens = 30, .first_token = 2}).output);
  EXPECT_GT(d.finished.at(1).usage.preemptions, 0);
  EXPECT_EQ(d.finished.at(2).usage.preemptions, 0);
}

// Aborting a waiting, a prefilling and a decoding sequence frees exactly their blocks; the others
// are unaffected.
TEST(Scheduler, RemoveFreesEveryBlock) {
  FakePool pool(1000, 4);
  const SchedulerConfig config{.max_num_seqs = 3, .max_num_batched_tokens = 24, .max_prefill_chunk_tokens = 16,
                               .max_model_len = 1000};
  Driver d(config, pool);
  const RequestSpec decoding{.prompt_len = 6, .max_tokens = 20, .first_token = 1};
  const RequestSpec prefilling{.prompt_len = 200, .max_tokens = 5, .first_token = 2};
  const RequestSpec survivor{.prompt_len = 9, .max_tokens = 12, .first_token = 3};
  d.add(1, decoding);
  d.add(2, survivor);
  d.add(3, prefilling);
  d.add(4, {.prompt_len = 5, .max_tokens = 5, .first_token = 4});  // waits: max_num_seqs = 3
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(d.step());
  const auto find = [&](RequestId id) -> Sequence* {
    for (Sequence* s : d.scheduler().running())
      if (s->id == id) return s;
    return nullptr;
  };
  ASSERT_TRUE(find(1) && find(1)->num_generated() > 0);
  ASSERT_TRUE(find(3) && find(3)->num_computed_tokens < 200 && find(3)->num_computed_tokens > 0);
  ASSERT_EQ(d.scheduler().waiting().size(), 1u);

  const int64_t used = pool.usage().used_blocks;
  auto removed = d.scheduler().remove(4);
  ASSERT_TRUE(removed);
  EXPECT_EQ(pool.usage().used_blocks, used);  // it held nothing
  removed = d.scheduler().remove(3);
  ASSERT_TRUE(removed);
  EXPECT_EQ(pool.usage().used_blocks, used - 50);  // its 200-token prompt: 50 blocks of 4
  const int64_t decoding_blocks = (find(1)->num_computed_tokens + 3) / 4;  // room for the computed tokens
  ASSERT_TRUE(d.scheduler().remove(1));
  EXPECT_EQ(pool.usage().used_blocks, used - 50 - decoding_blocks);
  EXPECT_FALSE(d.scheduler().remove(1));   // already gone
  EXPECT_FALSE(d.scheduler().remove(99));  // never known
  d.run_to_end();
  EXPECT_EQ(d.finished.at(2).output, run_alone(survivor).output);
  EXPECT_EQ(pool.usage().used_blocks, 0);
  EXPECT_EQ(pool.num_sequences(), 0u);
}

TEST(Scheduler, FinishReasons) {
  const RequestSpec base{.prompt_len = 12, .max_tokens = 10, .first_token = 9};
  const Finished ref = run_alone(base);
  ASSERT_EQ(ref.output.size(), 10u);
  EXPECT_EQ(ref.reason, FinishReason::kLength);
  // A token that first appears at index k >= 2.
  size_t k = 2;
  while (std::find(ref.output.begin(), ref.output.begin() + k, ref.output[k]) != ref.output.begin() + k) ++k;
  ASSERT_LT(k, ref.output.size());
  const int32_t eos = ref.output[k];

  Finished f = run_alone(base, eos);
  EXPECT_EQ(f.reason, FinishReason::kStop);
  EXPECT_EQ(f.output, std::vector<int32_t>(ref.output.begin(), ref.output.begin() + k + 1));

  RequestSpec ignore = base;
  ignore.ignore_eos = true;
  f = run_alone(ignore, eos);
  EXPECT_EQ(f.reason, FinishReason::kLength);
  EXPECT_EQ(f.output, ref.output);

  RequestSpec stop = base;
  stop.stop_token_ids = {ref.output[k]};
  f = run_alone(stop);
  EXPECT_EQ(f.reason, FinishReason::kStop);
  EXPECT_EQ(f.output.size(), k + 1);

  f = run_alone(base, -1, /*max_model_len=*/12 + 4);
  EXPECT_EQ(f.reason, FinishReason::kLength);
  EXPECT_EQ(f.output, std::vector<int32_t>(ref.output.begin(), ref.output.begin() + 4));
  EXPECT_EQ(f.usage.prompt_tokens, 12);
  EXPECT_EQ(f.usage.completion_tokens, 4);
}

// A second request sharing a prefix is admitted with the cached blocks, computes only the rest,
// reports the hit, and produces the tokens of a cold run.
TEST(Scheduler, PrefixCacheHitsAreCountedAndExact) {
  FakePool pool(1000, 16, 64, /*prefix_cache=*/true);
  Driver d(SchedulerConfig{.max_num_seqs = 4, .max_num_batched_tokens = 256, .max_model_len = 1000}, pool);
  RequestSpec a{.max_tokens = 5};
  for (int i = 0; i < 100; ++i) a.prompt.push_back((i * 13 + 5) % 64);
  RequestSpec b = a;
  b.prompt.resize(85);
  for (int i = 0; i < 20; ++i) b.prompt.push_back((i * 5 + 1) % 64);
  d.add(1, a);
  d.run_to_end();
  EXPECT_EQ(d.finished.at(1).usage.cached_prompt_tokens, 0);
  d.add(2, b);
  int64_t computed = 0;
  ASSERT_TRUE(d.step([&](const ScheduledBatch& batch) {
    ASSERT_EQ(batch.entries.size(), 1u);
    EXPECT_EQ(batch.entries[0].start, 80);  // 5 full blocks of 16 shared
    EXPECT_EQ(batch.prefix_hit_tokens, 80u);
    EXPECT_EQ(batch.prefix_queried_tokens, 105u);
    computed = batch.num_tokens;
  }));
  EXPECT_EQ(computed, 25);
  d.run_to_end();
  EXPECT_EQ(d.finished.at(2).usage.cached_prompt_tokens, 80);
  EXPECT_EQ(d.finished.at(2).output, run_alone(b).output);
  EXPECT_EQ(d.finished.at(1).output, run_alone(a).output);
}

// With a pool that keeps resume points only at chunk ends on block boundaries, prefill chunks end
// on the last boundary they cross; decodes are unaffected and outputs do not change.
TEST(Scheduler, AlignedPoolGetsBlockAlignedPrefillChunks) {
  FakePool pool(1000, 16, 64, /*prefix_cache=*/true);
  pool.aligned = true;
  Driver d(SchedulerConfig{.max_num_seqs = 4, .max_num_batched_tokens = 100, .max_model_len = 1000}, pool);
  const RequestSpec a{.prompt_len = 70, .max_tokens = 3, .first_token = 1};
  const RequestSpec b{.prompt_len = 200, .max_tokens = 3, .first_token = 2};
  d.add(1, a);
  d.add(2, b);
  std::map<RequestId, std::vector<std::pair<int64_t, int64_t>>> chunks;
  while (!d.scheduler().empty())
    ASSERT_TRUE(d.step([&](const ScheduledBatch& batch) {
      check_plan(d.scheduler(), batch);
      for (const auto& e : batch.entries) chunks[e.seq->id].push_back({e.start, e.start + e.num_tokens});
    }));
  using C = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(chunks[1], (C{{0, 64}, {64, 70}, {70, 71}, {71, 72}}));
  // Step 1 leaves 36 tokens of budget for b, aligned down to [0, 32); every prefill chunk ends on
  // a boundary (the last one too when it crosses one), only the final remainder does not.
  for (const auto& [start, end] : chunks[2]) {
    if (end - start > 1 && end < 192) {
      EXPECT_EQ(end % 16, 0) << start << ".." << end;
    }
  }
  EXPECT_EQ(chunks[2].front(), (std::pair<int64_t, int64_t>{0, 32}));
  EXPECT_EQ(d.finished.at(1).output, run_alone(a).output);
  EXPECT_EQ(d.finished.at(2).output, run_alone(b).output);
}

// A sequence that does not fit blocks the queue behind it (no starvation of big requests) until
// the pool has room; then everything completes.
TEST(Scheduler, AdmissionWaitsForTheWholeSequenceToFit) {
  FakePool pool(10, 8);  // 80 positions
  Driver d(SchedulerConfig{.max_num_seqs = 8, .max_num_batched_tokens = 128, .max_model_len = 80}, pool);
  d.add(1, {.prompt_len = 40, .max_tokens = 8, .first_token = 1});
  d.add(2, {.prompt_len = 60, .max_tokens = 4, .first_token = 2});  // does not fit beside 1
  d.add(3, {.prompt_len = 4, .max_tokens = 4, .first_token = 3});   // would fit, must wait behind 2
  ASSERT_TRUE(d.step([&](const ScheduledBatch& b) {
    ASSERT_EQ(b.entries.size(), 1u);
    EXPECT_EQ(b.entries[0].seq->id, 1u);
  }));
  EXPECT_EQ(ids_of(d.scheduler().waiting()), (std::vector<RequestId>{2, 3}));
  d.run_to_end();
  EXPECT_EQ(d.finished.size(), 3u);
  EXPECT_EQ(pool.usage().used_blocks, 0);
}

}  // namespace
}  // namespace ds4::test
