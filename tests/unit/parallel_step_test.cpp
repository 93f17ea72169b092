// The step message (parallel/step_message.h): encode / decode round trip of every field (replicated,
// data-parallel and sample messages), and bytes that are truncated, corrupt or inconsistent (ranks
// that do not match the step's mode) refused with a message. Leader + followers through
// the Engine on the demo model (threads over the in-process communicator, expert ranges split):
// the served tokens equal a one-process engine's, a prefix-cache hit is replayed on the followers,
// and at the end every follower's KV pool holds exactly the leader's bytes.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "engine/cpu_backend.h"
#include "engine/kv_geometry.h"
#include "engine/model.h"
#include "parallel/follower.h"
#include "parallel/leader_backend.h"
#include "parallel/thread_communicator.h"
#include "parallel_serve_util.h"
#include "scheduler/engine.h"
#include "scheduler/paged_kv_pool.h"

namespace ds4 {
namespace {

using namespace std::chrono_literals;
using parallel_test::Demo;
using parallel_test::demo;
using parallel_test::FollowerThreads;
using parallel_test::read_tokens;
using parallel_test::tokens;

StepMessage sample_message() {
  StepMessage m;
  m.step = 42;
  m.host_logits = false;
  m.ops = {{.kind = KvOp::Kind::kCopy, .region = 3, .offset = 4096, .src_region = 4, .src_offset = 128, .size = 2048},
           {.kind = KvOp::Kind::kFill, .region = 3, .offset = 64, .size = 100, .value = -1e30f},
           {.kind = KvOp::Kind::kRollback, .offset = 2, .size = 517}};
  m.sequences = {{.slot = 1, .start = 300, .blocks = {7, 3, 9}, .tokens = {11, 12, 13}, .all_logits = true, .speculative = true},
                 {.slot = 0, .start = 0, .blocks = {}, .tokens = {5}}};
  return m;
}

// A data-parallel step: ranks on every operation and sequence, then a sample message.
StepMessage data_parallel_message() {
  StepMessage m = sample_message();
  m.data_parallel = true;
  m.host_logits = true;
  for (size_t i = 0; i < m.ops.size(); ++i) m.ops[i].rank = static_cast<int32_t>(i % 2 + 1);
  m.sequences[0].rank = 0;
  m.sequences[1].rank = 3;
  return m;
}

StepMessage sample_rows_message() {
  StepMessage m;
  m.kind = StepMessage::Kind::kSample;
  m.step = 43;
  m.data_parallel = true;
  m.samples = {{.rank = 3, .sampling = {.params = {.temperature = 0.7f, .top_p = 0.9f, .min_p = 0.01f, .top_k = 50, .seed = 1ull << 40}, .step = 12}},
               {.rank = 0, .sampling = {.params = {.temperature = 0.0f}, .step = 0}}};
  return m;
}

TEST(StepMessage, RoundTripKeepsEveryField) {
  StepMessage back;
  for (const StepMessage& m : {sample_message(), data_parallel_message(), sample_rows_message()}) {
    ASSERT_EQ(decode_step_message(encode_step_message(m), back), "");
    EXPECT_EQ(back, m);
  }
  StepMessage stop;
  stop.kind = StepMessage::Kind::kStop;
  stop.step = 7;
  ASSERT_EQ(decode_step_message(encode_step_message(stop), back), "");
  EXPECT_EQ(back, stop);
  StepMessage ops;  // rollbacks sent at once, no forward
  ops.kind = StepMessage::Kind::kOps;
  ops.step = 8;
  ops.ops = {{.kind = KvOp::Kind::kRollback, .offset = 1, .size = 99}};
  ASSERT_EQ(decode_step_message(encode_step_message(ops), back), "");
  EXPECT_EQ(back, ops);
}

TEST(StepMessage, RefusesTruncatedCorruptAndInconsistentBytes) {
  const std::vector<uint8_t> bytes = encode_step_message(sample_message());
  StepMessage out;
  for (const StepMessage& m : {sample_message(), data_parallel_message(), sample_rows_message()}) {
    const std::vector<uint8_t> b = encode_step_message(m);
    for (size_t n = 0; n < b.size(); ++n)
      EXPECT_NE(decode_step_message(std::span(b).first(n), out), "") << "accepted " << n << " of " << b.size() << " bytes";
  }
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  EXPECT_EQ(decode_step_message(longer, out), "trailing bytes after the message");
  std::vector<uint8_t> bad = bytes;
  bad[0] ^= 1;
  EXPECT_EQ(decode_step_message(bad, out), "not a step message (bad magic)");
  bad = bytes;
  bad[4] = 9;  // version
  EXPECT_NE(decode_step_message(bad, out).find("version 9"), std::string::npos);
  StepMessage empty;  // a forward without sequences
  EXPECT_EQ(decode_step_message(encode_step_message(empty), out), "a forward step without sequences");
  StepMessage no_tokens = sample_message();
  no_tokens.sequences[1].tokens.clear();
  EXPECT_EQ(decode_step_message(encode_step_message(no_tokens), out), "a sequence without tokens");
  StepMessage mixed = data_parallel_message();  // ranks must match the step's mode
  mixed.sequences[1].rank = kAllRanks;
  EXPECT_EQ(decode_step_message(encode_step_message(mixed), out), "a sequence's rank does not match the step's mode");
  mixed = sample_message();
  mixed.ops[0].rank = 1;
  EXPECT_EQ(decode_step_message(encode_step_message(mixed), out), "a KV operation's rank does not match the step's mode");
  mixed = sample_rows_message();
  mixed.samples.clear();
  EXPECT_EQ(decode_step_message(encode_step_message(mixed), out), "a sample step that is not data-parallel or has no rows");
  mixed = sample_rows_message();
  mixed.samples[0].rank = -1;
  EXPECT_EQ(decode_step_message(encode_step_message(mixed), out), "a sample row without its rank");
  mixed = data_parallel_message();
  mixed.samples = sample_rows_message().samples;
  EXPECT_EQ(decode_step_message(encode_step_message(mixed), out), "sample rows outside a sample step");
  StepMessage huge = sample_message();  // a count larger than the bytes that follow
  std::vector<uint8_t> lie = encode_step_message(huge);
  const uint32_t many = 0x7fffffff;
  std::memcpy(lie.data() + 16, &many, 4);  // the op count, after magic, version, kind, flags, step
  EXPECT_EQ(decode_step_message(lie, out), "truncated KV operation list");
}

constexpr ForwardOptions kExact{.quantize_kv = false};  // rounding-level agreement (parallel_expert_test)

KvPoolLayout pool_layout() { return layout_kv_pool(kv_geometry(demo().config()), KvLayout::kF32, 12, 4, 6); }

EngineConfig engine_config() {
  const ModelConfig& c = demo().config();
  return EngineConfig{.scheduler = {.max_num_seqs = 4, .max_num_batched_tokens = 128, .max_prefill_chunk_tokens = 128},
                      .context_length = c.context_length, .eos_token_id = -1, .n_vocab = c.n_vocab};
}

// Three greedy requests: two share a 256-token prefix (the second is submitted after the first is
// done, so it resumes from the prefix cache), one short one runs alongside the first.
std::vector<GenerationRequest> requests() {
  std::vector<int32_t> a = tokens(300, 1), b(a.begin(), a.begin() + 256);
  const std::vector<int32_t> tail = tokens(30, 2);
  b.insert(b.end(), tail.begin(), tail.end());
  std::vector<GenerationRequest> out(3);
  out[0].prompt_tokens = a;
  out[1].prompt_tokens = tokens(20, 3);
  out[2].prompt_tokens = b;
  for (auto& r : out) r.sampling.temperature = 0.0f, r.max_tokens = 5, r.ignore_eos = true;
  return out;
}

// Runs the requests through an engine (the last one after the first two finish).
std::vector<std::vector<int32_t>> serve(Backend& backend, PagedKvPool& pool) {
  Engine engine(backend, pool, engine_config());
  engine.start();
  const std::vector<GenerationRequest> reqs = requests();
  auto s0 = engine.submit(reqs[0]), s1 = engine.submit(reqs[1]);
  std::vector<std::vector<int32_t>> out{read_tokens(*s0), read_tokens(*s1)};
  auto s2 = engine.submit(reqs[2]);
  out.push_back(read_tokens(*s2));
  engine.stop();
  return out;
}

TEST(LeaderFollowers, EngineServesTheSameTokensAndFollowersMirrorThePool) {
  const Demo& d = demo();
  const KvPoolLayout layout = pool_layout();
  CpuBackend single(d.config(), d.model->weights, kExact, 2);
  PagedKvPool single_pool(std::make_unique<KvCacheManager>(layout));
  const auto expected = serve(single, single_pool);

  for (int world : {2, 3}) {
    SCOPED_TRACE("world " + std::to_string(world));
    ThreadGroup group(world, 60s);
    std::vector<std::unique_ptr<KvStorage>> follower_storage(world);
    std::vector<uint64_t> follower_steps(world, 0);
    for (int r = 1; r < world; ++r) follower_storage[r] = make_host_storage(layout);
    FollowerThreads followers(group, [&](ThreadCommunicator& comm, int r) {
      CpuBackend backend(d.config(), d.model->weights, kExact, 1, {&comm, expert_shard(r, world, d.config().n_expert)});
      follower_steps[r] = Follower(comm, backend, layout, *follower_storage[r]).run();
    });
    ThreadCommunicator comm(group, 0);
    auto recorder_owned = std::make_unique<RecordingKvStorage>(make_host_storage(layout));
    RecordingKvStorage* recorder = recorder_owned.get();
    PagedKvPool pool(std::make_unique<KvCacheManager>(layout, std::move(recorder_owned)));
    CpuBackend local(d.config(), d.model->weights, kExact, 1, {&comm, expert_shard(0, world, d.config().n_expert)});
    LeaderBackend leader(local, comm, pool.manager(), *recorder);
    const auto served = serve(leader, pool);
    leader.stop();
    followers.join();

    EXPECT_EQ(served, expected);
    EXPECT_EQ(pool.manager().usage().prefix_hit_tokens, 256);
    for (int r = 1; r < world; ++r) {
      EXPECT_EQ(followers.error(r), "");
      EXPECT_EQ(follower_steps[r], leader.steps());
      for (int region = 0; region < layout.num_regions(); ++region)
        EXPECT_EQ(std::memcmp(follower_storage[r]->region(region), recorder->region(region), layout.region_bytes(region)), 0)
            << "rank " << r << " region " << region << " differs from the leader's";
    }
  }
}

// Speculative inputs and rollbacks (what MTP verification does) reach the follower in order: after
// feed, rollback, feed, its pool equals the leader's.
TEST(LeaderFollowers, RollbacksAreReplayed) {
  const Demo& d = demo();
  const KvPoolLayout layout = pool_layout();
  ThreadGroup group(2, 60s);
  auto storage = make_host_storage(layout);
  FollowerThreads follower(group, [&](ThreadCommunicator& comm, int r) {
    CpuBackend backend(d.config(), d.model->weights, kExact, 1, {&comm, expert_shard(r, 2, d.config().n_expert)});
    Follower(comm, backend, layout, *storage).run();
  });
  ThreadCommunicator comm(group, 0);
  auto recorder_owned = std::make_unique<RecordingKvStorage>(make_host_storage(layout));
  RecordingKvStorage* recorder = recorder_owned.get();
  PagedKvPool pool(std::make_unique<KvCacheManager>(layout, std::move(recorder_owned)));
  CpuBackend local(d.config(), d.model->weights, kExact, 1, {&comm, expert_shard(0, 2, d.config().n_expert)});
  LeaderBackend leader(local, comm, pool.manager(), *recorder);
  const std::vector<int32_t> prompt = tokens(140, 9), drafts = tokens(6, 10);
  ASSERT_TRUE(pool.admit(1, prompt, 0, 160));
  SequenceKv& kv = pool.kv(1);
  ForwardBatch batch;
  batch.sequences.push_back({&kv, prompt, false});
  leader.forward(batch);
  batch.sequences[0] = {&kv, drafts, true, true};
  leader.forward(batch);
  leader.rollback(kv, 142);  // keep two of the six
  batch.sequences[0] = {&kv, std::span(drafts).first(3), false};
  leader.forward(batch);
  leader.stop();
  follower.join();
  EXPECT_EQ(follower.error(1), "");
  for (int region = 0; region < layout.num_regions(); ++region)
    EXPECT_EQ(std::memcmp(storage->region(region), recorder->region(region), layout.region_bytes(region)), 0)
        << "region " << region << " differs from the leader's";
  pool.release(1);
}

TEST(LeaderFollowers, AFollowerThatDiesStopsTheLeaderWithAnError) {
  const Demo& d = demo();
  const KvPoolLayout layout = pool_layout();
  ThreadGroup group(2, 60s);
  std::thread dead([&] { group.abort("rank 1 exited"); });
  dead.join();
  ThreadCommunicator comm(group, 0);
  auto recorder_owned = std::make_unique<RecordingKvStorage>(make_host_storage(layout));
  RecordingKvStorage* recorder = recorder_owned.get();
  PagedKvPool pool(std::make_unique<KvCacheManager>(layout, std::move(recorder_owned)));
  CpuBackend local(d.config(), d.model->weights, kExact, 1, {&comm, expert_shard(0, 2, d.config().n_expert)});
  LeaderBackend leader(local, comm, pool.manager(), *recorder);
  Engine engine(leader, pool, engine_config());
  engine.start();
  auto s = engine.submit(requests()[1]);
  StreamChunk c;
  do ASSERT_TRUE(s->wait_for(c, 60s)); while (!c.finished());
  EXPECT_EQ(c.finish_reason, FinishReason::kError);
  EXPECT_NE(engine.fatal_error().find("rank 1 exited"), std::string::npos) << engine.fatal_error();
}

}  // namespace
}  // namespace ds4
