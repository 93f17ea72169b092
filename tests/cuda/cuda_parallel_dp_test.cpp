// Data-parallel attention on the GPU (docs/PARALLEL.md sections 3 and 7, engine/cuda/
// cuda_data_parallel.cpp): CudaBackend ranks that each run only their own sequences, the routed
// experts over every rank's all-gathered rows and the routed sums reduce-scattered back. Three
// sequences (ragged prefill of 37, 9 and 21 tokens, then four greedy decode steps), sequence s on
// rank s % world, against one rank running all three (no KV quantisation: logits within 1e-5
// relative, the replicated mode's bound; greedy tokens equal):
//   * ranks sharing one GPU over the host-staged test communicator (graphs off), worlds 2 and 4
//     (in world 4 rank 3 has no sequence: it only joins the exchanges);
//   * DpLeaderBackend and a CUDA follower through the Engine on one GPU, each rank with its own
//     device KV pool of its own size (rank 0's plan of rank 1's pool records operations only): the
//     served tokens equal one rank's, the prefix-cache hit happens on the rank holding the prefix,
//     and the follower runs sequences (device sampling through the kSample exchange);
//   * with two or more GPUs, over NCCL one rank per GPU with graphs on (collectives captured).
// Skips visibly without a GPU, or without a second GPU for the NCCL case.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <thread>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_kv.h"
#include "parallel/dp_leader_backend.h"
#include "parallel/follower.h"
#include "parallel/remote_kv_storage.h"
#include "scheduler/rank_kv_pools.h"
#include "tests/cuda/gpu_test_util.h"
#include "tests/cuda/parallel_test_util.h"
#ifdef DS4_HAVE_NCCL
#include "parallel/nccl_communicator.h"
#endif

namespace ds4 {
namespace {

const std::vector<int> kPromptLengths = {37, 9, 21};

// A sequence's last logit row of every forward, and its greedy tokens.
struct SeqRun {
  std::vector<std::vector<float>> rows;
  std::vector<int32_t> tokens;
};

// Runs the sequences `mine` for five forwards; with world > 1 the batches carry every rank's token
// count (sequence s runs on rank s % world).
std::map<int, SeqRun> run_sequences(CudaBackend& backend, const std::vector<int>& mine, int world) {
  std::map<int, std::unique_ptr<CudaSequenceKv>> kv;
  std::map<int, std::vector<int32_t>> input;
  for (int s : mine) kv[s] = backend.new_sequence(), input[s] = random_tokens(kPromptLengths[s], uint32_t(s + 1));
  std::map<int, SeqRun> runs;
  for (int step = 0; step <= 4; ++step) {
    ForwardBatch batch;
    if (world > 1) {
      batch.rank_tokens.assign(size_t(world), 0);
      for (int s = 0; s < int(kPromptLengths.size()); ++s) batch.rank_tokens[size_t(s % world)] += step == 0 ? kPromptLengths[s] : 1;
    }
    for (int s : mine) batch.sequences.push_back({kv[s].get(), input[s], false});
    const ForwardOutput out = backend.forward(batch);
    for (size_t i = 0; i < mine.size(); ++i) {
      const float* row = out.row(i, out.n_rows[i] - 1);
      SeqRun& run = runs[mine[i]];
      run.rows.emplace_back(row, row + out.n_vocab);
      run.tokens.push_back(static_cast<int32_t>(std::max_element(row, row + out.n_vocab) - row));
      input[mine[i]] = {run.tokens.back()};
    }
  }
  return runs;
}

const std::map<int, SeqRun>& one_rank() {
  static const std::map<int, SeqRun> runs = [] {
    CudaBackend::select_device(0);
    CudaBackend single(demo_model().config, demo_model().weights, options(0, nullptr, 1));
    return run_sequences(single, {0, 1, 2}, 1);
  }();
  return runs;
}

// Runs `world` data-parallel ranks on threads; make(r) gives rank r's communicator, device(r) its GPU.
void expect_world_agrees(int world, const std::function<std::unique_ptr<Communicator>(int)>& make,
                         const std::function<int(int)>& device) {
  std::vector<std::map<int, SeqRun>> runs(static_cast<size_t>(world));
  run_rank_threads(world, true, make, device, [&](int r, CudaBackend& backend) {
    std::vector<int> mine;
    for (int s = r; s < int(kPromptLengths.size()); s += world) mine.push_back(s);
    runs[size_t(r)] = run_sequences(backend, mine, world);
  });
  const std::map<int, SeqRun>& reference = one_rank();
  for (int r = 0; r < world; ++r) {
    for (const auto& [s, run] : runs[size_t(r)]) {
      SCOPED_TRACE("world " + std::to_string(world) + " sequence " + std::to_string(s));
      EXPECT_EQ(run.tokens, reference.at(s).tokens);
      ASSERT_EQ(run.rows.size(), reference.at(s).rows.size());
      for (size_t f = 0; f < run.rows.size(); ++f) {
        const double e = test::max_rel_error(run.rows[f], reference.at(s).rows[f]);
        std::printf("[ gpu ] data-parallel world %d sequence %d forward %zu: max rel. logit error vs one rank %.3g\n",
                    world, s, f, e);
        EXPECT_LT(e, 1e-5) << "forward " << f;
      }
    }
  }
}

TEST(CudaDataParallel, RanksOnOneGpuAgreeWithOneRank) {
  DS4_REQUIRE_GPU();
  for (int world : {2, 4}) {
    ThreadGroup group(world, std::chrono::seconds(120));
    expect_world_agrees(world, [&](int r) { return std::make_unique<HostStagedCommunicator>(group, r); },
                        [](int) { return 0; });
  }
}

TEST(CudaDataParallel, LeaderAndFollowerServeLikeOneRank) {
  DS4_REQUIRE_GPU();
  const ModelConfig& c = demo_model().config;
  const KvPoolLayout layout0 = cuda_kv_layout(c, 12, 4, 6), layout1 = cuda_kv_layout(c, 10, 4, 6);
  std::vector<std::vector<int32_t>> expected;
  {
    PagedKvPool single_pool(std::make_unique<KvCacheManager>(layout0, make_cuda_kv_storage(layout0)));
    auto plain = options(0, nullptr, 1);
    plain.kv_manager = &single_pool.manager();
    CudaBackend single(c, demo_model().weights, plain);
    expected = serve(single, single_pool);
  }
  ThreadGroup group(2, std::chrono::seconds(120));
  KvCacheManager follower_pool(layout1, make_cuda_kv_storage(layout1));
  std::string follower_error;
  uint64_t follower_sequences = 0;
  std::thread follower_thread([&] {
    try {
      CudaBackend::select_device(0);
      HostStagedCommunicator comm(group, 1);
      auto o = options(0, &comm, 2, true);
      o.kv_manager = &follower_pool;
      CudaBackend backend(c, demo_model().weights, o);
      Follower follower(comm, backend, layout1, follower_pool.storage());
      follower.run();
      follower_sequences = follower.sequences_run();
    } catch (const std::exception& e) {
      follower_error = e.what();
      group.abort(e.what());
    }
  });
  HostStagedCommunicator comm(group, 0);
  std::vector<std::unique_ptr<PagedKvPool>> pools;
  pools.push_back(std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layout0, make_cuda_kv_storage(layout0))));
  auto recorder = std::make_unique<RecordingKvStorage>(make_remote_storage(layout1));
  std::vector<RecordingKvStorage*> recorders = {nullptr, recorder.get()};
  pools.push_back(std::make_unique<PagedKvPool>(std::make_unique<KvCacheManager>(layout1, std::move(recorder))));
  RankKvPools rank_pools(std::move(pools));
  std::vector<std::vector<int32_t>> served;
  {
    auto o = options(0, &comm, 2, true);
    o.kv_manager = &rank_pools.pool(0).manager();
    CudaBackend local(c, demo_model().weights, o);
    DpLeaderBackend leader(local, comm, rank_pools, recorders, c.n_vocab);
    served = serve(leader, rank_pools);
    leader.stop();
    follower_thread.join();
  }
  EXPECT_EQ(follower_error, "");
  EXPECT_EQ(served, expected);
  EXPECT_EQ(rank_pools.pool(0).manager().usage().prefix_hit_tokens + rank_pools.pool(1).manager().usage().prefix_hit_tokens, 256);
  EXPECT_GT(follower_sequences, 0u) << "rank 1 never ran a sequence";
}

#ifdef DS4_HAVE_NCCL
TEST(CudaDataParallel, RanksOverNcclAgreeWithOneRank) {
  const int gpus = gpu_count();
  if (gpus < 2) GTEST_SKIP() << "needs two or more GPUs (found " << gpus << ")";
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  for (int world : {2, 4}) {
    if (world > gpus) break;
    const NcclId id = nccl_new_id();
    expect_world_agrees(world, [&](int r) { return std::make_unique<NcclCommunicator>(id, r, world, r); },
                        [](int r) { return r; });
  }
}
#endif

}  // namespace
}  // namespace ds4
