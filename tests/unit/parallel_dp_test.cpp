// Data-parallel attention with expert parallelism on the CPU reference (docs/PARALLEL.md sections 3,
// 5 and 8): worlds of 2, 3 and 4 ranks (threads over the in-process communicator), each rank a
// CpuBackend running only its own sequences and its own expert range, the routes exchanged with
// the experts' owners by all-to-all. Against one process running every sequence: the logits of every
// sequence are bit-identical (the stated tolerance is 0: a token's routed outputs are computed with
// the same arithmetic and added in the same expert-id order) and so are the greedy tokens. The
// sequences differ in length and start at different steps (different positions in one step), one
// sits out a step, one rank has no sequence in the first step and one rank never has any (both
// still take part in every layer's all-to-alls), and the expert ranges are uneven.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <thread>

#include "engine/cpu_backend.h"
#include "engine/kv_state.h"
#include "engine/load_error.h"
#include "engine/model.h"
#include "parallel/thread_communicator.h"

namespace ds4 {
namespace {

const Model& demo_model() {
  static std::unique_ptr<Model> model = load_model(std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf");
  return *model;
}

constexpr int kSteps = 5;
const std::vector<int> kPromptLengths = {37, 9, 21, 5, 16, 28};

std::vector<int32_t> prompt(int seq) {
  std::vector<int32_t> t(kPromptLengths[seq]);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>((seq * 7919u + 11u + i * 104729u) % 120000u);
  t[0] = 0;
  return t;
}

// Sequence 3 starts at step 1 and 5 at step 2 (prefill next to decodes), sequence 1 sits out step 3.
bool scheduled(int seq, int step) {
  if (seq == 3) return step >= 1;
  if (seq == 5) return step >= 2;
  if (seq == 1) return step != 3;
  return true;
}

// What a sequence got: its logit rows of every forward it took part in, and its greedy tokens.
struct SeqRun {
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> tokens;
};

struct RankResult {
  std::map<int, SeqRun> seqs;
  std::vector<int64_t> unique_experts;  // per step: distinct experts this rank computed
};

// Runs the given sequences through every step (an empty batch when none is scheduled).
RankResult run_sequences(CpuBackend& backend, const std::vector<int>& seqs) {
  const Model& m = demo_model();
  std::map<int, std::unique_ptr<ContiguousKv>> kv;
  std::map<int, std::vector<int32_t>> input;
  for (int s : seqs) kv[s] = std::make_unique<ContiguousKv>(m.config), input[s] = prompt(s);
  RankResult result;
  for (int step = 0; step < kSteps; ++step) {
    ForwardBatch batch;
    std::vector<int> in_batch;
    for (int s : seqs)
      if (scheduled(s, step)) {
        batch.sequences.push_back({kv[s].get(), input[s], s == 2 && step == 0});
        in_batch.push_back(s);
      }
    const ForwardOutput out = backend.forward(batch);
    result.unique_experts.push_back(out.unique_experts);
    for (size_t i = 0; i < in_batch.size(); ++i) {
      SeqRun& run = result.seqs[in_batch[i]];
      run.logits.emplace_back(out.row(i), out.row(i) + out.n_rows[i] * out.n_vocab);
      const float* last = out.row(i, out.n_rows[i] - 1);
      run.tokens.push_back(static_cast<int32_t>(std::max_element(last, last + out.n_vocab) - last));
      input[in_batch[i]] = {run.tokens.back()};
    }
  }
  return result;
}

struct World {
  std::vector<std::vector<int>> seqs;  // per rank
  std::vector<ExpertShard> shards;     // per rank; empty: the default layout
};

std::vector<RankResult> run_world(const World& world) {
  const Model& m = demo_model();
  const int size = static_cast<int>(world.seqs.size());
  ThreadGroup group(size);
  std::vector<RankResult> results(size);
  std::vector<std::string> errors(size);
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] {
      try {
        ThreadCommunicator comm(group, r);
        const ExpertShard own = world.shards.empty() ? expert_shard(r, size, m.config.n_expert) : world.shards[r];
        const ExpertParallel ep(&comm, own, true, world.shards);
        CpuBackend backend(m.config, m.weights, {}, 1, ep);
        results[r] = run_sequences(backend, world.seqs[r]);
      } catch (const std::exception& e) {
        errors[r] = e.what();
        group.abort(e.what());
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < size; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  return results;
}

// Uneven contiguous ranges from the given sizes (the last takes the rest).
std::vector<ExpertShard> uneven_shards(std::vector<int> sizes) {
  int first = 0;
  std::vector<ExpertShard> shards;
  for (size_t r = 0; r < sizes.size(); ++r) {
    const int count = r + 1 == sizes.size() ? demo_model().config.n_expert - first : sizes[r];
    shards.push_back({first, count});
    first += count;
  }
  return shards;
}

const RankResult& reference() {
  static const RankResult result = [] {
    const Model& m = demo_model();
    CpuBackend single(m.config, m.weights, {}, 2);
    return run_sequences(single, {0, 1, 2, 3, 4, 5});
  }();
  return result;
}

void expect_world_matches_one_process(const World& world) {
  const std::vector<RankResult> ranks = run_world(world);
  const RankResult& ref = reference();
  std::map<int, int> seen;  // sequence -> how many ranks ran it
  for (size_t r = 0; r < ranks.size(); ++r)
    for (const auto& [seq, run] : ranks[r].seqs) {
      SCOPED_TRACE("rank " + std::to_string(r) + " sequence " + std::to_string(seq));
      ++seen[seq];
      const SeqRun& expect = ref.seqs.at(seq);
      EXPECT_EQ(run.tokens, expect.tokens);
      ASSERT_EQ(run.logits.size(), expect.logits.size());
      for (size_t f = 0; f < run.logits.size(); ++f) EXPECT_EQ(run.logits[f], expect.logits[f]) << "forward " << f;
    }
  for (int s = 0; s < 6; ++s) EXPECT_EQ(seen[s], 1) << "sequence " << s;
  // Every expert is computed by exactly one owner: the ranks' distinct experts add up to one process's.
  for (int step = 0; step < kSteps; ++step) {
    int64_t sum = 0;
    for (const RankResult& r : ranks) sum += r.unique_experts[step];
    EXPECT_EQ(sum, ref.unique_experts[step]) << "step " << step;
  }
}

TEST(DataParallelExperts, TwoRanksWithUnevenExpertRangesMatchOneProcess) {
  const int n = demo_model().config.n_expert;
  expect_world_matches_one_process({{{0, 3}, {1, 2, 4, 5}}, uneven_shards({n / 4, 0})});
}

TEST(DataParallelExperts, FourRanksWithAnIdleRankMatchOneProcess) {
  // Rank 0's only sequence starts at step 1 (nothing to run at step 0); rank 2 never has a sequence.
  const int n = demo_model().config.n_expert;
  ASSERT_GE(n, 8);
  expect_world_matches_one_process({{{3}, {0, 5}, {}, {1, 2, 4}}, uneven_shards({1, n / 2 - 1, n / 4 + 1, 0})});
}

TEST(DataParallelExperts, ThreeRanksWithTheDefaultLayoutMatchOneProcess) {
  expect_world_matches_one_process({{{5}, {0, 1, 2}, {3, 4}}, {}});
}

TEST(DataParallelExperts, BadExpertRangeListsAreRefused) {
  const Model& m = demo_model();
  const int n = m.config.n_expert;
  ThreadGroup two(2);
  ThreadCommunicator comm(two, 0);
  const auto make = [&](ExpertShard own, std::vector<ExpertShard> all) {
    CpuBackend backend(m.config, m.weights, {}, 1, ExpertParallel(&comm, own, true, std::move(all)));
  };
  EXPECT_THROW(make({0, n / 2}, {{0, n / 2}}), LoadError);                        // one range for two ranks
  EXPECT_THROW(make({0, n / 2}, {{0, n / 2}, {n / 2 + 1, n / 2 - 1}}), LoadError);  // a gap
  EXPECT_THROW(make({0, n / 2}, {{0, n / 2}, {n / 2, n / 2 - 1}}), LoadError);      // not every expert
  EXPECT_THROW(make({0, 1}, {{0, n / 2}, {n / 2, n - n / 2}}), LoadError);          // own range differs
  EXPECT_NO_THROW(make({0, n / 2}, {{0, n / 2}, {n / 2, n - n / 2}}));
}

}  // namespace
}  // namespace ds4
