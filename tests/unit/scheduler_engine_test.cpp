// Engine loop tests with the fake backend (no model): concurrent submits from several threads give
// each request its alone-run tokens through its stream; the notify callback drives an
// executor-style reader; aborts, validation errors, stream overflow, logprobs, shutdown and the
// statistics.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <deque>
#include <thread>

#include "scheduler/engine.h"
#include "scheduler_fakes.h"

namespace ds4::test {
namespace {

using namespace std::chrono_literals;

struct EngineFixture {
  FakeBackend backend;
  FakePool pool;
  Engine engine;
  EngineFixture(int64_t blocks, int64_t block_tokens, SchedulerConfig sc, int32_t eos = -1, size_t capacity = 8192)
      : pool(blocks, block_tokens),
        engine(backend, pool,
               EngineConfig{.scheduler = sc, .context_length = 100000, .eos_token_id = eos, .n_vocab = 64,
                            .stream_capacity_tokens = capacity}) {}
};

GenerationRequest to_request(const RequestSpec& s) {
  const auto seq = make_sequence(0, s, 64);
  GenerationRequest r = seq->request;
  r.prompt_tokens = seq->tokens;
  return r;
}

// Reads a stream to its end.
StreamChunk read_all(RequestStream& stream, std::vector<int32_t>& tokens) {
  StreamChunk total, chunk;
  while (!total.finished()) {
    if (!stream.wait_for(chunk, 5s)) {
      ADD_FAILURE() << "stream " << stream.id() << " timed out";
      break;
    }
    tokens.insert(tokens.end(), chunk.tokens.begin(), chunk.tokens.end());
    total.logprobs.insert(total.logprobs.end(), chunk.logprobs.begin(), chunk.logprobs.end());
    total.finish_reason = chunk.finish_reason;
    total.stop_token = chunk.stop_token;
    total.error = chunk.error;
    total.usage = chunk.usage;
    total.timing = chunk.timing;
  }
  return total;
}

TEST(Engine, ConcurrentSubmitsMatchAloneRuns) {
  EngineFixture f(40, 8, SchedulerConfig{.max_num_seqs = 5, .max_num_batched_tokens = 48, .max_prefill_chunk_tokens = 32});
  f.engine.start();
  constexpr int kThreads = 4, kPerThread = 6;
  std::vector<RequestSpec> specs;
  for (int i = 0; i < kThreads * kPerThread; ++i)
    specs.push_back({.prompt_len = 3 + (i * 37) % 90, .max_tokens = 2 + (i * 7) % 20, .temperature = i % 3 ? 0.7f : 0.0f,
                     .seed = uint64_t(i), .priority = i % 4 == 0 ? 1 : 0, .first_token = i});
  std::vector<std::vector<int32_t>> outputs(specs.size());
  std::vector<StreamChunk> finals(specs.size());
  std::vector<std::thread> clients;
  for (int t = 0; t < kThreads; ++t) {
    clients.emplace_back([&, t] {
      for (int k = 0; k < kPerThread; ++k) {
        const size_t i = t * kPerThread + k;
        auto stream = f.engine.submit(to_request(specs[i]));
        finals[i] = read_all(*stream, outputs[i]);
      }
    });
  }
  for (auto& c : clients) c.join();
  f.engine.stop();
  uint64_t total_completion = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(outputs[i], run_alone(specs[i]).output) << "request " << i;
    EXPECT_EQ(finals[i].finish_reason, FinishReason::kLength);
    EXPECT_EQ(finals[i].usage.prompt_tokens, specs[i].prompt_len);
    EXPECT_EQ(finals[i].usage.completion_tokens, specs[i].max_tokens);
    const RequestTiming& t = finals[i].timing;
    EXPECT_LE(t.queued, t.first_scheduled);
    EXPECT_LE(t.first_scheduled, t.first_token);
    EXPECT_LE(t.first_token, t.finished);
    total_completion += finals[i].usage.completion_tokens;
  }
  const EngineStats st = f.engine.stats();
  EXPECT_EQ(st.requests_submitted, specs.size());
  EXPECT_EQ(st.requests_finished[int(FinishReason::kLength)], specs.size());
  EXPECT_EQ(st.generation_tokens, total_completion);
  EXPECT_GT(st.steps, 0u);
  EXPECT_EQ(f.pool.usage().used_blocks, 0);
  EXPECT_EQ(f.pool.num_sequences(), 0u);
}

// An executor-style reader: the engine's notify only queues a "poll" job; one reader thread runs
// the jobs (as an Asio strand would) and never blocks on a stream.
TEST(Engine, NotifyDrivesANonBlockingReader) {
  EngineFixture f(1000, 16, SchedulerConfig{.max_num_seqs = 8, .max_num_batched_tokens = 64});
  std::mutex m;
  std::condition_variable cv;
  std::deque<int> jobs;  // indices of streams to poll
  std::atomic<int> notifications{0};
  constexpr int kRequests = 8;
  std::vector<std::shared_ptr<RequestStream>> streams(kRequests);
  std::vector<std::vector<int32_t>> outputs(kRequests);
  f.engine.start();
  for (int i = 0; i < kRequests; ++i) {
    streams[i] = f.engine.submit(to_request({.prompt_len = 5 + i, .max_tokens = 12, .first_token = i}), [&, i] {
      notifications++;
      std::lock_guard lock(m);
      jobs.push_back(i);
      cv.notify_one();
    });
  }
  int done = 0;
  while (done < kRequests) {
    int i = 0;
    {
      std::unique_lock lock(m);
      ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return !jobs.empty(); })) << "no notification";
      i = jobs.front();
      jobs.pop_front();
    }
    StreamChunk c;
    while (streams[i]->poll(c)) {
      outputs[i].insert(outputs[i].end(), c.tokens.begin(), c.tokens.end());
      done += c.finished();
    }
  }
  f.engine.stop();
  for (int i = 0; i < kRequests; ++i)
    EXPECT_EQ(outputs[i], run_alone({.prompt_len = 5 + i, .max_tokens = 12, .first_token = i}).output);
  EXPECT_GE(notifications.load(), kRequests);
  EXPECT_LE(notifications.load(), kRequests * 13);  // at most one per publication
}

TEST(Engine, AbortFinishesAtTheNextStepAndFreesBlocks) {
  EngineFixture f(1000, 4, SchedulerConfig{.max_num_seqs = 4, .max_num_batched_tokens = 64});
  f.engine.start();
  auto keep = f.engine.submit(to_request({.prompt_len = 10, .max_tokens = 30, .first_token = 1}));
  auto victim = f.engine.submit(to_request({.prompt_len = 10, .max_tokens = 100000, .first_token = 2}));
  StreamChunk c;
  ASSERT_TRUE(victim->wait_for(c, 5s));  // it is running
  f.engine.abort(victim->id());
  f.engine.abort(victim->id());  // twice: harmless
  f.engine.abort(12345);         // unknown: ignored
  std::vector<int32_t> tokens;
  const StreamChunk last = read_all(*victim, tokens);
  EXPECT_EQ(last.finish_reason, FinishReason::kAbort);
  EXPECT_LT(last.usage.completion_tokens, 100000);
  std::vector<int32_t> kept;
  EXPECT_EQ(read_all(*keep, kept).finish_reason, FinishReason::kLength);
  EXPECT_EQ(kept, run_alone({.prompt_len = 10, .max_tokens = 30, .first_token = 1}).output);
  f.engine.stop();
  EXPECT_EQ(f.pool.usage().used_blocks, 0);
  EXPECT_EQ(f.engine.stats().requests_finished[int(FinishReason::kAbort)], 1u);
}

// An abort that leaves the engine idle still updates the gauges (no further step will).
TEST(Engine, AbortWhileOtherwiseIdleRefreshesGauges) {
  EngineFixture f(1000, 4, SchedulerConfig{.max_num_seqs = 4, .max_num_batched_tokens = 64});
  f.engine.start();
  auto victim = f.engine.submit(to_request({.prompt_len = 10, .max_tokens = 100000, .first_token = 3}));
  StreamChunk c;
  ASSERT_TRUE(victim->wait_for(c, 5s));  // running
  f.engine.abort(victim->id());
  std::vector<int32_t> tokens;
  EXPECT_EQ(read_all(*victim, tokens).finish_reason, FinishReason::kAbort);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (f.engine.stats().num_running != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  const EngineStats st = f.engine.stats();
  EXPECT_EQ(st.num_running, 0);
  EXPECT_EQ(st.kv.used_blocks, 0);
  f.engine.stop();
}

// The last request finishing leaves the engine idle: the gauges say so (no further step runs).
TEST(Engine, FinishWhileOtherwiseIdleRefreshesGauges) {
  EngineFixture f(1000, 4, SchedulerConfig{.max_num_seqs = 4, .max_num_batched_tokens = 64});
  f.engine.start();
  auto only = f.engine.submit(to_request({.prompt_len = 10, .max_tokens = 5, .first_token = 3}));
  std::vector<int32_t> tokens;
  EXPECT_EQ(read_all(*only, tokens).finish_reason, FinishReason::kLength);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (f.engine.stats().num_running != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  const EngineStats st = f.engine.stats();
  EXPECT_EQ(st.num_running, 0);
  EXPECT_EQ(st.num_waiting, 0);
  EXPECT_EQ(st.kv.used_blocks, 0);
  EXPECT_EQ(st.last_step.num_running, 1);  // the step itself still counts what it planned
  f.engine.stop();
}

// A backend that fails (a device error) after a few passes.
class FailingBackend final : public Backend {
 public:
  ForwardOutput forward(const ForwardBatch& batch) override {
    if (++calls_ > 3) throw std::runtime_error("device lost");
    return inner_.forward(batch);
  }

 private:
  FakeBackend inner_;
  int calls_ = 0;
};

TEST(Engine, BackendFailureFailsRequestsAndRefusesNewOnes) {
  FailingBackend backend;
  FakePool pool(1000, 4);
  Engine engine(backend, pool,
                EngineConfig{.scheduler = SchedulerConfig{.max_num_seqs = 4, .max_num_batched_tokens = 64},
                             .context_length = 100000, .n_vocab = 64});
  engine.start();
  auto s = engine.submit(to_request({.prompt_len = 5, .max_tokens = 100, .first_token = 1}));
  std::vector<int32_t> tokens;
  const StreamChunk last = read_all(*s, tokens);
  EXPECT_EQ(last.finish_reason, FinishReason::kError);
  EXPECT_NE(last.error.find("device lost"), std::string::npos) << last.error;
  EXPECT_NE(engine.fatal_error().find("device lost"), std::string::npos);
  std::vector<int32_t> none;
  const StreamChunk refused = read_all(*engine.submit(to_request({.prompt_len = 5, .max_tokens = 4})), none);
  EXPECT_EQ(refused.finish_reason, FinishReason::kError);
  EXPECT_NE(refused.error.find("device lost"), std::string::npos) << refused.error;
  engine.stop();
  EXPECT_EQ(pool.usage().used_blocks, 0);
}

TEST(Engine, InvalidRequestsAreRefusedWithAReason) {
  EngineFixture f(64, 16, SchedulerConfig{.max_num_seqs = 4, .max_num_batched_tokens = 64});
  const auto refused = [&](GenerationRequest r, const std::string& words) {
    const std::string why = f.engine.check_request(r);
    EXPECT_NE(why.find(words), std::string::npos) << "got: " << why;
    auto s = f.engine.submit(std::move(r));
    StreamChunk c;
    EXPECT_TRUE(s->finished());
    ASSERT_TRUE(s->poll(c));
    EXPECT_EQ(c.finish_reason, FinishReason::kError);
    EXPECT_EQ(c.error, why);
  };
  GenerationRequest ok = to_request({.prompt_len = 4});
  EXPECT_EQ(f.engine.check_request(ok), "");
  refused(GenerationRequest{}, "empty");
  GenerationRequest r = ok;
  r.prompt_tokens[2] = 64;
  refused(r, "outside the vocabulary");
  r = ok;
  r.prompt_tokens.assign(64 * 16, 1);  // the pool holds 1024 positions: max_model_len
  refused(r, "at most 1023");
  r = ok;
  r.max_tokens = 0;
  refused(r, "max_tokens");
  r = ok;
  r.sampling.top_p = 0.0f;
  refused(r, "top_p");
  r = ok;
  r.sampling.temperature = NAN;
  refused(r, "temperature");
  r = ok;
  r.top_logprobs = kMaxTopLogprobs + 1;
  refused(r, "top_logprobs");
  r = ok;
  r.stop_token_ids = {-1};
  refused(r, "stop token");
  EXPECT_EQ(f.engine.stats().requests_rejected, 8u);
  EXPECT_EQ(f.engine.max_model_len(), 1024);
}

// A reader that never reads loses its request instead of blocking the engine.
TEST(Engine, StreamOverflowEndsTheRequestNotTheEngine) {
  EngineFixture f(1000, 16, SchedulerConfig{.max_num_seqs = 4, .max_num_batched_tokens = 64}, -1, /*capacity=*/4);
  f.engine.start();
  auto slow = f.engine.submit(to_request({.prompt_len = 4, .max_tokens = 50, .first_token = 1}));
  auto fast = f.engine.submit(to_request({.prompt_len = 4, .max_tokens = 3, .first_token = 2}));
  std::vector<int32_t> fast_tokens;
  EXPECT_EQ(read_all(*fast, fast_tokens).finish_reason, FinishReason::kLength);
  for (int i = 0; i < 500 && !slow->finished(); ++i) std::this_thread::sleep_for(2ms);
  ASSERT_TRUE(slow->finished());
  StreamChunk c;
  ASSERT_TRUE(slow->poll(c));
  EXPECT_EQ(c.finish_reason, FinishReason::kError);
  EXPECT_NE(c.error.find("overflow"), std::string::npos);
  EXPECT_EQ(c.tokens.size(), 4u);
  f.engine.stop();
  EXPECT_EQ(f.pool.usage().used_blocks, 0);
}

TEST(Engine, LogprobsAndStopTokens) {
  const RequestSpec spec{.prompt_len = 6, .max_tokens = 6, .first_token = 3};
  const std::vector<int32_t> ref = run_alone(spec).output;
  EngineFixture f(1000, 16, SchedulerConfig{.max_num_seqs = 4, .max_num_batched_tokens = 64}, /*eos=*/ref[3]);
  f.engine.start();
  GenerationRequest r = to_request(spec);
  r.logprobs = true;
  r.top_logprobs = 5;
  std::vector<int32_t> tokens;
  const StreamChunk last = read_all(*f.engine.submit(r), tokens);
  f.engine.stop();
  const size_t n = std::find(ref.begin(), ref.end(), ref[3]) - ref.begin() + 1;  // first EOS ends it
  EXPECT_EQ(tokens, std::vector<int32_t>(ref.begin(), ref.begin() + n));
  EXPECT_EQ(last.finish_reason, FinishReason::kStop);
  EXPECT_EQ(last.stop_token, ref[3]);
  ASSERT_EQ(last.logprobs.size(), tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    const SampledLogprobs& lp = last.logprobs[i];
    ASSERT_EQ(lp.top.size(), 5u);
    // Greedy: the sampled token is the most likely one.
    EXPECT_EQ(lp.top[0].token, tokens[i]);
    EXPECT_EQ(lp.top[0].logprob, lp.logprob);
    double mass = 0.0;
    for (size_t k = 0; k < lp.top.size(); ++k) {
      EXPECT_LE(lp.top[k].logprob, 0.0f);
      if (k) {
        EXPECT_LE(lp.top[k].logprob, lp.top[k - 1].logprob);
      }
      mass += std::exp(lp.top[k].logprob);
    }
    EXPECT_LT(mass, 1.0);
    EXPECT_GT(mass, 5.0 / 64);  // the top 5 of 64 hold more than an even share
  }
}

TEST(Engine, StopAbortsWhatIsLeft) {
  EngineFixture f(1000, 16, SchedulerConfig{.max_num_seqs = 2, .max_num_batched_tokens = 64});
  f.engine.start();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 5; ++i) streams.push_back(f.engine.submit(to_request({.prompt_len = 4, .max_tokens = 1000000, .first_token = i})));
  StreamChunk c;
  ASSERT_TRUE(streams[0]->wait_for(c, 5s));
  f.engine.stop();
  for (auto& s : streams) {
    ASSERT_TRUE(s->finished());
    std::vector<int32_t> t;
    EXPECT_EQ(read_all(*s, t).finish_reason, FinishReason::kAbort);
  }
  EXPECT_EQ(f.pool.usage().used_blocks, 0);
  auto late = f.engine.submit(to_request({.prompt_len = 4}));
  ASSERT_TRUE(late->poll(c));
  EXPECT_EQ(c.finish_reason, FinishReason::kError);
}

}  // namespace
}  // namespace ds4::test
