// Data-parallel attention served through the Engine (docs/PARALLEL.md sections 6 and 7): rank 0's
// DpLeaderBackend over RankKvPools (one pool per rank, of different sizes) and followers on threads,
// every rank a CpuBackend running only its own sequences and its own expert range. Against a
// one-process engine on the same requests: every request's tokens (greedy, seeded sampling) and
// log-probabilities are identical (the data-parallel CPU forward is bit-identical to one process,
// parallel_dp_test), with the logits gathered on rank 0 (host sampling) or the tokens drawn on the
// ranks holding the rows (device sampling, here a test decorator that samples on the host). The
// sequences spread over the ranks, and a request sharing a cached prefix goes to the rank holding
// it and resumes from it. Also: the step message's version-2 fields, and RankKvPools' placement.
#include <gtest/gtest.h>


#include "engine/cpu_backend.h"
#include "engine/kv_geometry.h"
#include "engine/sampler.h"
#include "parallel/dp_leader_backend.h"
#include "parallel/follower.h"
#include "parallel/remote_kv_storage.h"
#include "parallel/thread_communicator.h"
#include "parallel_serve_util.h"
#include "scheduler/engine.h"

namespace ds4 {
namespace {

using namespace std::chrono_literals;
using parallel_test::demo;
using parallel_test::FollowerThreads;
using parallel_test::read_tokens;
using parallel_test::tokens;

// The ranks' pools differ in size (each rank plans its own from its memory).
KvPoolLayout rank_layout(int rank) {
  return layout_kv_pool(kv_geometry(demo().config()), KvLayout::kF32, 12 - 2 * rank, 4, 6);
}

EngineConfig engine_config() {
  const ModelConfig& c = demo().config();
  return EngineConfig{.scheduler = {.max_num_seqs = 8, .max_num_batched_tokens = 160, .max_prefill_chunk_tokens = 160},
                      .context_length = c.context_length, .eos_token_id = -1, .n_vocab = c.n_vocab};
}

// Device sampling for a backend that has none (the CPU reference): keeps the last forward's logits
// and draws each row's token with sample_token, so the kSample exchange runs on the CPU.
class RowSampler final : public Backend {
 public:
  explicit RowSampler(Backend& inner) : inner_(inner) {}
  ForwardOutput forward(const ForwardBatch& batch) override {
    ForwardBatch all = batch;
    all.host_logits = true;
    last_ = inner_.forward(all);
    ForwardOutput out = last_;
    if (!batch.host_logits) out.logits.clear();
    return out;
  }
  bool supports_device_sampling() const override { return true; }
  std::vector<int32_t> sample_rows(std::span<const RowSampling> rows) override {
    EXPECT_EQ(static_cast<int64_t>(rows.size()) * last_.n_vocab, static_cast<int64_t>(last_.logits.size()));
    std::vector<int32_t> out;
    for (size_t i = 0; i < rows.size(); ++i)
      out.push_back(sample_token(std::span(last_.logits).subspan(i * size_t(last_.n_vocab), size_t(last_.n_vocab)),
                                 rows[i].params, rows[i].step));
    return out;
  }

 private:
  Backend& inner_;
  ForwardOutput last_;
};

// Six requests: greedy and seeded-sampled ones, one with log-probabilities, different lengths; the
// last shares the first one's 256-token prefix and is submitted after the others are done.
std::vector<GenerationRequest> requests() {
  std::vector<GenerationRequest> out(6);
  out[0].prompt_tokens = tokens(300, 1);
  out[1].prompt_tokens = tokens(20, 3);
  out[2].prompt_tokens = tokens(90, 4);
  out[3].prompt_tokens = tokens(45, 5);
  out[4].prompt_tokens = tokens(7, 6);
  std::vector<int32_t> shared(out[0].prompt_tokens.begin(), out[0].prompt_tokens.begin() + 256);
  const std::vector<int32_t> tail = tokens(30, 2);
  shared.insert(shared.end(), tail.begin(), tail.end());
  out[5].prompt_tokens = shared;
  for (auto& r : out) r.sampling.temperature = 0.0f, r.max_tokens = 6, r.ignore_eos = true;
  out[1].sampling = {.temperature = 0.9f, .top_p = 0.95f, .top_k = 40, .seed = 77};
  out[3].sampling = {.temperature = 1.2f, .min_p = 0.05f, .seed = 5};
  out[2].logprobs = true, out[2].top_logprobs = 2;
  return out;
}

struct Served {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<float> logprobs;  // request 2's
  bool operator==(const Served&) const = default;
};

Served serve(Backend& backend, KvPool& pool) {
  Engine engine(backend, pool, engine_config());
  engine.start();
  const std::vector<GenerationRequest> reqs = requests();
  std::vector<std::shared_ptr<RequestStream>> first;
  for (size_t i = 0; i + 1 < reqs.size(); ++i) first.push_back(engine.submit(reqs[i]));
  Served out;
  for (size_t i = 0; i < first.size(); ++i) out.tokens.push_back(read_tokens(*first[i], i == 2 ? &out.logprobs : nullptr));
  auto last = engine.submit(reqs.back());
  out.tokens.push_back(read_tokens(*last));
  engine.stop();
  return out;
}

const Served& one_process() {
  static const Served served = [] {
    CpuBackend single(demo().config(), demo().model->weights, {}, 2);
    PagedKvPool pool(std::make_unique<KvCacheManager>(rank_layout(0)));
    return serve(single, pool);
  }();
  return served;
}

void run_world(int world, bool device_sampling) {
  const ModelConfig& c = demo().config();
  ThreadGroup group(world, 60s);
  std::vector<KvPoolLayout> layouts;
  for (int r = 0; r < world; ++r) layouts.push_back(rank_layout(r));
  std::vector<std::unique_ptr<KvStorage>> storage(world);
  std::vector<uint64_t> sequences(world, 0);  // sequence entries each follower ran
  for (int r = 1; r < world; ++r) storage[r] = make_host_storage(layouts[r]);
  FollowerThreads followers(group, [&](ThreadCommunicator& comm, int r) {
    CpuBackend cpu(c, demo().model->weights, {}, 1, {&comm, expert_shard(r, world, c.n_expert), true});
    RowSampler sampler(cpu);
    Follower follower(comm, device_sampling ? static_cast<Backend&>(sampler) : cpu, layouts[r], *storage[r]);
    follower.run();
    sequences[r] = follower.sequences_run();
  });
  ThreadCommunicator comm(group, 0);
  std::vector<std::unique_ptr<PagedKvPool>> pools;
  std::vector<RecordingKvStorage*> recorders(world, nullptr);
  pools.push_back(std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layouts[0])));
  for (int r = 1; r < world; ++r) {
    auto recorder = std::make_unique<RecordingKvStorage>(make_remote_storage(layouts[r]));
    recorders[r] = recorder.get();
    pools.push_back(std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layouts[r], std::move(recorder))));
  }
  RankKvPools rank_pools(std::move(pools));
  CpuBackend cpu(c, demo().model->weights, {}, 1, {&comm, expert_shard(0, world, c.n_expert), true});
  RowSampler sampler(cpu);
  Backend& local = device_sampling ? static_cast<Backend&>(sampler) : cpu;
  DpLeaderBackend leader(local, comm, rank_pools, recorders, c.n_vocab);
  const Served served = serve(leader, rank_pools);
  leader.stop();
  followers.join();

  EXPECT_EQ(served, one_process());
  int64_t hits = 0;
  for (int r = 0; r < world; ++r) hits += rank_pools.pool(r).manager().usage().prefix_hit_tokens;
  EXPECT_EQ(hits, 256) << "the request sharing a cached prefix did not resume from it";
  for (int r = 1; r < world; ++r) {
    EXPECT_EQ(followers.error(r), "");
    EXPECT_GT(sequences[r], 0u) << "rank " << r << " never ran a sequence";
  }
  EXPECT_EQ(rank_pools.usage().used_blocks, 0);
}

TEST(DataParallelServing, TwoRanksServeTheOneProcessTokensWithHostLogits) { run_world(2, false); }
TEST(DataParallelServing, ThreeRanksServeTheOneProcessTokensWithRankSampling) { run_world(3, true); }

}  // namespace
}  // namespace ds4
