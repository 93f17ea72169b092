// Speculative decoding (MTP) with expert parallelism, replicated attention (docs/PARALLEL.md
// section 7): the draft model runs on rank 0 only (the MTP block is never sharded, so drafting needs
// no collective), the verification forward and the rollbacks of rejected drafts reach the followers
// as step messages. World 2 and 3 (threads, expert ranges split) against one process without
// speculation: the same greedy tokens and, at the end, every follower's KV pool byte-identical to
// the leader's. Drafts are forced to the right token with probability 0.6 (the oracle of
// SpeculativeConfig, the MTP still runs), so steps accept some drafts and roll back the rest.
#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "engine/cpu_backend.h"
#include "engine/kv_geometry.h"
#include "engine/mtp_draft.h"
#include "parallel/follower.h"
#include "parallel/leader_backend.h"
#include "parallel/thread_communicator.h"
#include "parallel_serve_util.h"
#include "scheduler/engine.h"
#include "scheduler/paged_kv_pool.h"
#include "scheduler/speculator.h"

namespace ds4 {
namespace {

using namespace std::chrono_literals;
using parallel_test::demo;
using parallel_test::FollowerThreads;
using parallel_test::read_tokens;
using parallel_test::tokens;

constexpr ForwardOptions kExact{.quantize_kv = false};  // rounding-level agreement across worlds

KvPoolLayout pool_layout() { return layout_kv_pool(kv_geometry(demo().config()), KvLayout::kF32, 16, 4, 6); }

const MtpModule& mtp() {
  static std::unique_ptr<MtpModule> m = load_mtp(std::string(DS4_BINARY_DIR) + "/models/tiny-q2-mtp.gguf", demo().config());
  return *m;
}

std::vector<GenerationRequest> requests() {
  std::vector<GenerationRequest> out(3);
  out[0].prompt_tokens = tokens(140, 21);
  out[1].prompt_tokens = tokens(33, 22);
  out[2].prompt_tokens = tokens(70, 23);
  for (auto& r : out) r.sampling.temperature = 0.0f, r.max_tokens = 12, r.ignore_eos = true;
  return out;
}

std::vector<std::vector<int32_t>> serve(Backend& backend, PagedKvPool& pool, Speculator* spec, EngineStats* stats = nullptr) {
  const ModelConfig& c = demo().config();
  Engine engine(backend, pool,
                EngineConfig{.scheduler = {.max_num_seqs = 4, .max_num_batched_tokens = 256},
                             .context_length = c.context_length, .eos_token_id = -1, .n_vocab = c.n_vocab},
                spec);
  engine.start();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const GenerationRequest& r : requests()) streams.push_back(engine.submit(r));
  std::vector<std::vector<int32_t>> out;
  for (auto& s : streams) out.push_back(read_tokens(*s));
  engine.stop();
  if (stats) *stats = engine.stats();
  return out;
}

const std::vector<std::vector<int32_t>>& without_speculation() {
  static const auto out = [] {
    CpuBackend single(demo().config(), demo().model->weights, kExact, 2);
    PagedKvPool pool(std::make_unique<KvCacheManager>(pool_layout()));
    return serve(single, pool, nullptr);
  }();
  return out;
}

// Drafts forced to the token the target will produce (from the run without speculation) with
// probability 0.6, else to another token.
SpeculativeConfig oracle_config() {
  std::map<std::vector<int32_t>, std::vector<int32_t>> by_prompt;
  const std::vector<GenerationRequest> reqs = requests();
  for (size_t i = 0; i < reqs.size(); ++i) by_prompt[reqs[i].prompt_tokens] = without_speculation()[i];
  SpeculativeConfig sc;
  sc.max_draft = 3;
  sc.adaptive = false;
  sc.oracle_acceptance = 0.6;
  sc.oracle = [by_prompt](const Sequence& seq, int64_t index) -> int32_t {
    const std::vector<int32_t> prompt(seq.tokens.begin(), seq.tokens.begin() + seq.num_prompt_tokens);
    const auto it = by_prompt.find(prompt);
    const int64_t k = index - seq.num_prompt_tokens;
    return it == by_prompt.end() || k < 0 || k >= int64_t(it->second.size()) ? -1 : it->second[size_t(k)];
  };
  return sc;
}

TEST(ExpertParallelMtp, DraftsOnRankZeroVerifiedAndRolledBackOnEveryRank) {
  const ModelConfig& c = demo().config();
  const KvPoolLayout layout = pool_layout();
  for (int world : {2, 3}) {
    SCOPED_TRACE("world " + std::to_string(world));
    ThreadGroup group(world, 60s);
    std::vector<std::unique_ptr<KvStorage>> storage(world);
    for (int r = 1; r < world; ++r) storage[r] = make_host_storage(layout);
    FollowerThreads followers(group, [&](ThreadCommunicator& comm, int r) {
      CpuBackend backend(c, demo().model->weights, kExact, 1, {&comm, expert_shard(r, world, c.n_expert)});
      Follower(comm, backend, layout, *storage[r]).run();
    });
    ThreadCommunicator comm(group, 0);
    auto recorder_owned = std::make_unique<RecordingKvStorage>(make_host_storage(layout));
    RecordingKvStorage* recorder = recorder_owned.get();
    PagedKvPool pool(std::make_unique<KvCacheManager>(layout, std::move(recorder_owned)));
    CpuBackend local(c, demo().model->weights, kExact, 1, {&comm, expert_shard(0, world, c.n_expert)});
    LeaderBackend leader(local, comm, pool.manager(), *recorder);
    CpuMtpDraftModel draft(local, c, mtp().weights);
    Speculator spec(oracle_config(), leader, &draft, c.n_vocab, -1);
    EngineStats stats;
    const auto served = serve(leader, pool, &spec, &stats);
    leader.stop();
    followers.join();

    EXPECT_EQ(served, without_speculation());
    EXPECT_GT(stats.spec_accepted_tokens, 0u);
    EXPECT_LT(stats.spec_accepted_tokens, stats.spec_draft_tokens) << "no draft was rejected (no rollback ran)";
    for (int r = 1; r < world; ++r) {
      EXPECT_EQ(followers.error(r), "");
      for (int region = 0; region < layout.num_regions(); ++region)
        EXPECT_EQ(std::memcmp(storage[r]->region(region), recorder->region(region), layout.region_bytes(region)), 0)
            << "rank " << r << " region " << region << " differs from the leader's";
    }
  }
}

}  // namespace
}  // namespace ds4
