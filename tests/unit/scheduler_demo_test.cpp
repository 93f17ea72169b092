// End-to-end engine tests on the demo model (CPU backend, paged KV pool): 16+ concurrent requests
// with mixed prompt lengths, greedy and seeded sampling, produce exactly the tokens each produces
// alone (a plain ContiguousKv loop); the same under a tiny pool that forces repeated preemption
// (with prefix-cache resumes), and with random aborts; the pool ends fully free. The CPU backend is
// bit-exact across batching and chunking, so equality is exact. Outputs are short (CI time).
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "engine/cpu_backend.h"
#include "engine/kv_geometry.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "scheduler/engine.h"
#include "scheduler/paged_kv_pool.h"

namespace ds4 {
namespace {

using namespace std::chrono_literals;

struct Demo {
  std::unique_ptr<Model> model = load_model(std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf");
  int32_t eos = Tokenizer(tokenizer_tables_from_gguf(*model->file)).chat_ids().eos;
  CpuBackend backend{model->config, model->weights};
};

Demo& demo() {
  static Demo d;
  return d;
}

// n requests, greedy and seeded sampling with various filters. Every second prompt has 123..127
// tokens, so with its 6..8 output tokens it crosses position 128; the others have 3..64 tokens.
std::vector<GenerationRequest> mixed_requests(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<GenerationRequest> out(n);
  for (int i = 0; i < n; ++i) {
    GenerationRequest& r = out[i];
    const int len = i % 2 == 0 ? 123 + int(rng() % 5) : 3 + int(rng() % 62);
    for (int k = 0; k < len; ++k) r.prompt_tokens.push_back(int32_t(100 + rng() % 100000));
    r.max_tokens = 8 - int(rng() % 3);
    if (i % 4 >= 2) {  // half of the long and half of the short prompts
      r.sampling = SamplingParams{.temperature = 0.9f, .top_p = i % 4 == 1 ? 0.9f : 1.0f, .min_p = 0.02f,
                                  .top_k = i % 3 == 0 ? 40 : 0, .seed = uint64_t(1000 + i)};
    } else {
      r.sampling.temperature = 0.0f;
    }
  }
  return out;
}

// The request run alone, without the scheduler: prefill the whole prompt, then token by token.
std::vector<int32_t> alone(const GenerationRequest& r) {
  Demo& d = demo();
  ContiguousKv kv(d.model->config);
  std::vector<int32_t> out;
  ForwardBatch batch;
  batch.sequences.push_back({&kv, r.prompt_tokens, false});
  ForwardOutput fo = d.backend.forward(batch);
  for (int64_t i = 0; i < r.max_tokens; ++i) {
    const int32_t t = sample_token({fo.row(0), size_t(fo.n_vocab)}, r.sampling, uint64_t(i));
    out.push_back(t);
    if (t == d.eos && !r.ignore_eos) break;
    batch.sequences[0].tokens = std::span<const int32_t>(&out.back(), 1);
    fo = d.backend.forward(batch);
  }
  return out;
}

struct RequestSet {
  std::vector<GenerationRequest> requests;
  std::vector<std::vector<int32_t>> expected;  // each request's alone-run tokens
};

RequestSet make_set(int n, uint32_t seed) {
  RequestSet s;
  s.requests = mixed_requests(n, seed);
  for (const auto& r : s.requests) s.expected.push_back(alone(r));
  return s;
}

// Shared by the tests (the alone runs are the slow part).
const RequestSet& mixed_set() {
  static const RequestSet set = make_set(16, 1);
  return set;
}

std::unique_ptr<PagedKvPool> paged_pool(int block_tokens, int64_t blocks, int64_t slots, int64_t snapshots) {
  KvGeometry g = kv_geometry(demo().model->config);
  g.block_tokens = block_tokens;
  return std::make_unique<PagedKvPool>(
      std::make_unique<KvCacheManager>(layout_kv_pool(g, KvLayout::kF32, blocks, slots, snapshots)));
}

EngineConfig engine_config(SchedulerConfig sc) {
  const ModelConfig& c = demo().model->config;
  return EngineConfig{.scheduler = sc, .context_length = c.context_length, .eos_token_id = demo().eos, .n_vocab = c.n_vocab};
}

struct Outcome {
  std::vector<int32_t> tokens;
  StreamChunk last;
};

Outcome read_all(RequestStream& s) {
  Outcome o;
  StreamChunk c;
  while (!o.last.finished()) {
    if (!s.wait_for(c, 60s)) {
      ADD_FAILURE() << "request " << s.id() << " timed out";
      break;
    }
    o.tokens.insert(o.tokens.end(), c.tokens.begin(), c.tokens.end());
    o.last = c;
  }
  return o;
}

void expect_pool_free(PagedKvPool& pool) {
  const KvCacheUsage u = pool.manager().usage();
  EXPECT_EQ(u.used_blocks, 0);
  EXPECT_EQ(u.sequences, 0);
  EXPECT_EQ(pool.manager().check_invariants(), "");
}

TEST(EngineDemo, ConcurrentRequestsMatchAloneRuns) {
  const auto& [requests, expected] = mixed_set();
  auto pool = paged_pool(256, 16, 16, 16);
  Engine engine(demo().backend, *pool,
                engine_config({.max_num_seqs = 16, .max_num_batched_tokens = 96, .max_prefill_chunk_tokens = 64}));
  int max_batch = 0;
  engine.set_step_observer([&](const StepStats& s) { max_batch = std::max(max_batch, s.num_seqs); });
  engine.start();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& r : requests) streams.push_back(engine.submit(r));
  for (size_t i = 0; i < streams.size(); ++i) {
    const Outcome o = read_all(*streams[i]);
    EXPECT_EQ(o.tokens, expected[i]) << "request " << i;
    EXPECT_NE(o.last.finish_reason, FinishReason::kError) << o.last.error;
    EXPECT_EQ(o.last.usage.prompt_tokens, int64_t(requests[i].prompt_tokens.size()));
  }
  engine.stop();
  EXPECT_GE(max_batch, 8);  // they really ran together
  expect_pool_free(*pool);
}

// 128-token blocks, 3 of them: at most three sequences fit, and the ones whose prompt ends just
// before position 128 need a second block as they decode, so the newest running ones keep getting
// preempted and recomputed (resuming from their cached first block when its snapshot survived).
TEST(EngineDemo, TinyPoolForcesRepeatedPreemptionAndStaysExact) {
  const auto& [requests, expected] = mixed_set();
  auto pool = paged_pool(128, 3, 8, 8);
  Engine engine(demo().backend, *pool, engine_config({.max_num_seqs = 8, .max_num_batched_tokens = 64}));
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& r : requests) streams.push_back(engine.submit(r));
  engine.start();  // after queueing everything: the run is deterministic
  int preempted_requests = 0, most_preemptions = 0;
  for (size_t i = 0; i < streams.size(); ++i) {
    const Outcome o = read_all(*streams[i]);
    EXPECT_EQ(o.tokens, expected[i]) << "request " << i;
    preempted_requests += o.last.usage.preemptions > 0;
    most_preemptions = std::max(most_preemptions, int(o.last.usage.preemptions));
  }
  engine.stop();
  const EngineStats st = engine.stats();
  std::printf("preemptions %llu, preempted requests %d (at most %d times each), prefix-cache hit tokens %llu\n",
              (unsigned long long)st.preemptions, preempted_requests, most_preemptions,
              (unsigned long long)st.prefix_cache_hit_tokens);
  EXPECT_GE(st.preemptions, 5u);
  EXPECT_GE(preempted_requests, 3);
  EXPECT_GT(st.prefix_cache_hit_tokens, 0u);  // a preempted sequence resumed from its cached block
  expect_pool_free(*pool);
}

// Random aborts while requests wait, prefill and decode: the others are unaffected, an aborted
// request's tokens are a prefix of its alone run, and every block comes back.
TEST(EngineDemo, RandomAbortsFreeEverything) {
  const auto& [requests, expected] = mixed_set();
  auto pool = paged_pool(256, 6, 6, 6);  // some requests wait for room
  Engine engine(demo().backend, *pool, engine_config({.max_num_seqs = 6, .max_num_batched_tokens = 64}));
  engine.start();
  std::mt19937 rng(5);
  std::vector<std::shared_ptr<RequestStream>> streams;
  std::vector<int> abort_after(requests.size(), -1);  // tokens seen before aborting; -1: never
  for (size_t i = 0; i < requests.size(); ++i) {
    streams.push_back(engine.submit(requests[i]));
    if (rng() % 3 == 0) abort_after[i] = int(rng() % 4);  // 0: abort right away (often still queued)
    if (abort_after[i] == 0) engine.abort(streams[i]->id());
  }
  std::vector<Outcome> got(requests.size());
  for (size_t done = 0; done < requests.size();) {
    done = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
      Outcome& o = got[i];
      StreamChunk c;
      if (!o.last.finished() && streams[i]->poll(c)) {
        const bool crossed = abort_after[i] > 0 && int(o.tokens.size()) < abort_after[i] &&
                             int(o.tokens.size() + c.tokens.size()) >= abort_after[i];
        o.tokens.insert(o.tokens.end(), c.tokens.begin(), c.tokens.end());
        o.last = c;
        if (crossed) engine.abort(streams[i]->id());
      }
      done += o.last.finished();
    }
    std::this_thread::sleep_for(1ms);
  }
  engine.stop();
  int aborted = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const Outcome& o = got[i];
    if (o.last.finish_reason == FinishReason::kAbort) {
      ++aborted;
      EXPECT_NE(abort_after[i], -1) << "request " << i << " aborted unasked";
      ASSERT_LE(o.tokens.size(), expected[i].size());
      EXPECT_TRUE(std::equal(o.tokens.begin(), o.tokens.end(), expected[i].begin())) << "request " << i;
    } else {
      EXPECT_EQ(o.tokens, expected[i]) << "request " << i;
    }
  }
  EXPECT_GE(aborted, 3);
  EXPECT_EQ(engine.stats().requests_finished[int(FinishReason::kAbort)], uint64_t(aborted));
  expect_pool_free(*pool);
}

}  // namespace
}  // namespace ds4
