// Expert parallelism on the GPU (docs/PARALLEL.md): the shard kernels against their CPU
// references; CudaBackend with 2 and 4 ranks sharing one GPU (threads; a host-staged test
// communicator, so no graphs) against one rank (logits within relative 1e-5 without KV
// quantisation, same greedy tokens); and, with two or more GPUs, the NCCL communicator
// (all-reduce, broadcast, barrier, all-to-all on host and device memory), the same model comparison
// over NCCL, one rank per GPU, and the CPU reference's data-parallel MoE over NCCL.
// Skips visibly without a GPU, or without a second GPU for the NCCL cases.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <thread>

#include "engine/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/kv_state.h"
#include "engine/model.h"
#include "engine/model_config.h"
#include "kernels/cuda/expert_shard.h"
#include "parallel/follower.h"
#include "parallel/leader_backend.h"
#include "parallel/thread_communicator.h"
#include "scheduler/engine.h"
#include "scheduler/paged_kv_pool.h"
#include "tests/cuda/gpu_test_util.h"
#include "tests/cuda/parallel_test_util.h"
#ifdef DS4_HAVE_NCCL
#include "parallel/nccl_communicator.h"
#endif

namespace ds4 {
namespace {

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST(CudaExpertShard, KernelsMatchTheirReferences) {
  DS4_REQUIRE_GPU();
  std::vector<int32_t> active = {0, 3, 5, 8, 9, 12, 15};
  test::DeviceArray<int32_t> d_active(active), d_n(std::vector<int32_t>{static_cast<int32_t>(active.size())});
  cuda::keep_shard_experts(d_active.get(), d_n.get(), 4, 8, 0, nullptr);  // keep [4, 12)
  const std::vector<int32_t> kept = d_active.to_host();
  EXPECT_EQ(d_n.to_host()[0], 3);
  EXPECT_EQ(std::vector<int32_t>(kept.begin(), kept.begin() + 3), (std::vector<int32_t>{5, 8, 9}));
  d_active.upload(active);
  d_n.upload({static_cast<int32_t>(active.size())});
  cuda::keep_shard_experts(d_active.get(), d_n.get(), 4, 8, 4, nullptr);  // local ids of the slice
  const std::vector<int32_t> local = d_active.to_host();
  EXPECT_EQ(std::vector<int32_t>(local.begin(), local.begin() + 3), (std::vector<int32_t>{1, 4, 5}));

  const int64_t T = 5, n = 48;
  const int k = 6;
  const std::vector<float> out = random_floats(T * k * n, 7);
  test::DeviceArray<float> d_out(out), d_sum(T * n);
  cuda::sum_route_slots(d_out.get(), T, k, n, d_sum.get(), nullptr);
  const std::vector<float> sum = d_sum.to_host();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t d = 0; d < n; ++d) {
      float y = 0.0f;
      for (int s = 0; s < k; ++s) y += out[(t * k + s) * n + d];
      ASSERT_EQ(sum[t * n + d], y);
    }
  cuda::spread_route_sum(d_sum.get(), T, k, n, d_out.get(), nullptr);
  const std::vector<float> spread = d_out.to_host();
  for (int64_t t = 0; t < T; ++t)
    for (int s = 0; s < k; ++s)
      for (int64_t d = 0; d < n; ++d) ASSERT_EQ(spread[(t * k + s) * n + d], s == 0 ? sum[t * n + d] : 0.0f);
}

std::vector<uint8_t> device_bytes(const uint8_t* p, uint64_t n) {
  std::vector<uint8_t> host(n);
  DS4_CUDA_CHECK(cudaMemcpy(host.data(), p, n, cudaMemcpyDeviceToHost));
  return host;
}

// A rank's synthetic weights hold exactly its experts' bytes of the full synthetic model (direct
// GPU-generated blocks for q2, host-encoded rows for q8_0), everything else unchanged.
TEST(CudaExpertShard, SlicedSyntheticWeightsAreTheFullModelsExperts) {
  DS4_REQUIRE_GPU();
  const ModelConfig c = preset_tiny();
  for (QuantScheme scheme : {QuantScheme::kQ2, QuantScheme::kQ8_0}) {
    const DeviceWeights full = DeviceWeights::synthesize(c, scheme, 5);
    const ExpertShard shard = expert_shard(2, 4, c.n_expert);
    const DeviceWeights part = DeviceWeights::synthesize(c, scheme, 5, 0, {}, shard);
    EXPECT_LT(part.bytes(), full.bytes());
    for (int il : {0, c.n_layer - 1}) {
      const DeviceTensor &a = part.layers[il].ffn_down_exps, &b = full.layers[il].ffn_down_exps;
      ASSERT_EQ(a.ne2, uint64_t(shard.count));
      EXPECT_EQ(device_bytes(a.data, a.bytes()), device_bytes(b.data + shard.first * b.matrix_bytes(), a.bytes())) << "layer " << il;
      const DeviceTensor &g = part.layers[il].ffn_gate_shexp, &h = full.layers[il].ffn_gate_shexp;
      EXPECT_EQ(device_bytes(g.data, g.bytes()), device_bytes(h.data, h.bytes()));
    }
  }
}

struct RankRun {
  std::vector<std::vector<float>> logits;
  std::vector<int32_t> tokens;
};

// A ragged prefill of three sequences, then four greedy decode steps.
RankRun run_rank(CudaBackend& backend) {
  std::vector<std::vector<int32_t>> prompts = {random_tokens(37, 1), random_tokens(9, 2), random_tokens(21, 3)};
  std::vector<std::unique_ptr<CudaSequenceKv>> kv;
  for (size_t s = 0; s < prompts.size(); ++s) kv.push_back(backend.new_sequence());
  RankRun run;
  std::vector<std::vector<int32_t>> next(prompts.size());
  ForwardBatch batch;
  for (size_t s = 0; s < prompts.size(); ++s) batch.sequences.push_back({kv[s].get(), prompts[s], false});
  for (int step = 0; step <= 4; ++step) {
    const ForwardOutput out = backend.forward(batch);
    run.logits.push_back(out.logits);
    batch.sequences.clear();
    for (size_t s = 0; s < prompts.size(); ++s) {
      const float* row = out.row(s, out.n_rows[s] - 1);
      next[s] = {static_cast<int32_t>(std::max_element(row, row + out.n_vocab) - row)};
      run.tokens.push_back(next[s][0]);
      batch.sequences.push_back({kv[s].get(), next[s], false});
    }
  }
  return run;
}

void expect_runs_agree(const std::vector<RankRun>& runs, const RankRun& reference, int world) {
  for (int r = 0; r < world; ++r) {
    SCOPED_TRACE("world " + std::to_string(world) + " rank " + std::to_string(r));
    EXPECT_EQ(runs[r].tokens, reference.tokens);
    ASSERT_EQ(runs[r].logits.size(), reference.logits.size());
    for (size_t f = 0; f < reference.logits.size(); ++f) {
      const double e = test::max_rel_error(runs[r].logits[f], reference.logits[f]);
      if (r == 0) std::printf("[ gpu ] world %d forward %zu: max rel. logit error vs one rank %.3g\n", world, f, e);
      EXPECT_LT(e, 1e-5) << "forward " << f;
    }
  }
}

// Runs `world` ranks on threads; make(r) gives rank r's communicator (owned by the thread) and device.
std::vector<RankRun> run_world(int world, const std::function<std::unique_ptr<Communicator>(int)>& make,
                               const std::function<int(int)>& device) {
  std::vector<RankRun> runs(static_cast<size_t>(world));
  run_rank_threads(world, false, make, device, [&](int r, CudaBackend& backend) { runs[size_t(r)] = run_rank(backend); });
  return runs;
}

TEST(CudaExpertParallel, RanksOnOneGpuAgreeWithOneRank) {
  DS4_REQUIRE_GPU();
  CudaBackend single(demo_model().config, demo_model().weights, options(0, nullptr, 1));
  const RankRun reference = run_rank(single);
  for (int world : {2, 4}) {
    ThreadGroup group(world, std::chrono::seconds(120));
    const auto runs = run_world(world, [&](int r) { return std::make_unique<HostStagedCommunicator>(group, r); },
                                [](int) { return 0; });
    expect_runs_agree(runs, reference, world);
  }
}

TEST(CudaExpertParallel, LeaderAndFollowerServeLikeOneRank) {
  DS4_REQUIRE_GPU();
  const ModelConfig& c = demo_model().config;
  const KvPoolLayout layout = cuda_kv_layout(c, 12, 4, 6);
  auto plain = options(0, nullptr, 1);
  PagedKvPool single_pool(std::make_unique<KvCacheManager>(layout, make_cuda_kv_storage(layout)));
  plain.kv_manager = &single_pool.manager();
  std::vector<std::vector<int32_t>> expected;
  {
    CudaBackend single(c, demo_model().weights, plain);
    expected = serve(single, single_pool);
  }
  ThreadGroup group(2, std::chrono::seconds(120));
  KvCacheManager follower_pool(layout, make_cuda_kv_storage(layout));
  std::string follower_error;
  std::thread follower_thread([&] {
    try {
      CudaBackend::select_device(0);
      HostStagedCommunicator comm(group, 1);
      auto o = options(0, &comm, 2);
      o.kv_manager = &follower_pool;
      CudaBackend backend(c, demo_model().weights, o);
      Follower(comm, backend, layout, follower_pool.storage()).run();
    } catch (const std::exception& e) {
      follower_error = e.what();
      group.abort(e.what());
    }
  });
  HostStagedCommunicator comm(group, 0);
  auto recorder_owned = std::make_unique<RecordingKvStorage>(make_cuda_kv_storage(layout));
  RecordingKvStorage* recorder = recorder_owned.get();
  PagedKvPool pool(std::make_unique<KvCacheManager>(layout, std::move(recorder_owned)));
  auto o = options(0, &comm, 2);
  o.kv_manager = &pool.manager();
  std::vector<std::vector<int32_t>> served;
  {
    CudaBackend local(c, demo_model().weights, o);
    LeaderBackend leader(local, comm, pool.manager(), *recorder);
    served = serve(leader, pool);
    leader.stop();
    follower_thread.join();
  }
  EXPECT_EQ(follower_error, "");
  EXPECT_EQ(served, expected);
  EXPECT_EQ(pool.manager().usage().prefix_hit_tokens, 256);
  for (int region = 0; region < layout.num_regions(); ++region)
    EXPECT_EQ(region_bytes(follower_pool.storage(), layout, region), region_bytes(*recorder, layout, region))
        << "region " << region;
}

// Rank `from` sends (from + 2 * to) % 3 values to rank `to` (some zero), each naming both ranks.
size_t a2a_count(int from, int to) { return static_cast<size_t>((from + 2 * to) % 3); }
int32_t a2a_value(int from, int to, size_t i) { return from * 10000 + to * 100 + int32_t(i); }

// One all-to-all of comm's rank: host memory (stream null) or device memory on a stream; returns what
// arrived, or throws.
std::vector<int32_t> nccl_all_to_all(Communicator& comm, bool on_device) {
  const int me = comm.rank(), world = comm.world();
  std::vector<size_t> counts(world), send_bytes(world), recv_bytes(world);
  std::vector<int32_t> send;
  for (int p = 0; p < world; ++p) {
    counts[p] = a2a_count(me, p);
    for (size_t i = 0; i < counts[p]; ++i) send.push_back(a2a_value(me, p, i));
  }
  const std::vector<size_t> incoming = all_to_all_counts(comm, counts);
  size_t total = 0;
  for (int q = 0; q < world; ++q) {
    send_bytes[q] = counts[q] * sizeof(int32_t);
    recv_bytes[q] = incoming[q] * sizeof(int32_t);
    total += incoming[q];
  }
  std::vector<int32_t> recv(total, -1);
  if (!on_device) {
    comm.all_to_all_v(send.data(), send_bytes, recv.data(), recv_bytes, nullptr);
    return recv;
  }
  send.push_back(0);  // device arrays of at least one element
  recv.push_back(-1);
  test::DeviceArray<int32_t> d_send(send), d_recv(recv);
  cudaStream_t stream = nullptr;
  DS4_CUDA_CHECK(cudaStreamCreate(&stream));
  comm.all_to_all_v(d_send.get(), send_bytes, d_recv.get(), recv_bytes, stream);
  comm.wait(stream);
  DS4_CUDA_CHECK(cudaStreamDestroy(stream));
  std::vector<int32_t> out = d_recv.to_host();
  out.pop_back();
  return out;
}

// The expected arrivals of rank r in nccl_all_to_all / the host-staged variant.
std::vector<int32_t> a2a_expected(int r, int world) {
  std::vector<int32_t> expect;
  for (int q = 0; q < world; ++q)
    for (size_t i = 0; i < a2a_count(q, r); ++i) expect.push_back(a2a_value(q, r, i));
  return expect;
}

// The host-staged double's all_to_all_v on device memory (two ranks sharing one GPU).
TEST(CudaExpertParallel, HostStagedAllToAllOnOneGpu) {
  DS4_REQUIRE_GPU();
  ThreadGroup group(2);
  std::vector<std::string> errors(2);
  std::vector<std::vector<int32_t>> got(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      try {
        CudaBackend::select_device(0);
        HostStagedCommunicator comm(group, r);
        got[r] = nccl_all_to_all(comm, true);
      } catch (const std::exception& e) {
        errors[r] = e.what();
        group.abort(e.what());
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(errors[r], "") << "rank " << r;
    EXPECT_EQ(got[r], a2a_expected(r, 2)) << "rank " << r;
  }
}

#ifdef DS4_HAVE_NCCL
TEST(NcclCommunicator, CollectivesAcrossGpus) {
  const int world = gpu_count();
  if (world < 2) GTEST_SKIP() << "needs two or more GPUs (found " << world << ")";
  setenv("NCCL_NVLS_ENABLE", "0", 1);  // every rank's environment (this process)
  const NcclId id = nccl_new_id();
  EXPECT_EQ(nccl_id_from_hex(nccl_id_to_hex(id)), id);
  std::vector<std::string> errors(world);
  std::vector<std::vector<float>> sums(world);
  std::vector<std::string> texts(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        NcclCommunicator comm(id, r, world, r);
        std::vector<float> v(1000, float(r + 1));
        test::DeviceArray<float> d(v);
        cudaStream_t stream = nullptr;
        DS4_CUDA_CHECK(cudaStreamCreate(&stream));
        comm.all_reduce_sum(d.get(), v.size(), stream);
        comm.wait(stream);
        sums[r] = d.to_host();
        std::string text = r == 0 ? "from rank 0" : std::string(11, '?');
        comm.broadcast(text.data(), text.size(), 0);
        comm.barrier();
        texts[r] = text;
        DS4_CUDA_CHECK(cudaStreamDestroy(stream));
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    EXPECT_EQ(errors[r], "");
    EXPECT_EQ(texts[r], "from rank 0");
    ASSERT_EQ(sums[r].size(), 1000u);
    EXPECT_EQ(sums[r][999], float(world * (world + 1) / 2));
  }
}

TEST(NcclCommunicator, AllToAllWithPerPeerSizesAcrossGpus) {
  const int world = gpu_count();
  if (world < 2) GTEST_SKIP() << "needs two or more GPUs (found " << world << ")";
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  const NcclId id = nccl_new_id();
  std::vector<std::string> errors(world);
  std::vector<std::vector<int32_t>> host(world), device(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        NcclCommunicator comm(id, r, world, r);
        host[r] = nccl_all_to_all(comm, false);
        device[r] = nccl_all_to_all(comm, true);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    EXPECT_EQ(errors[r], "") << "rank " << r;
    const std::vector<int32_t> expect = a2a_expected(r, world);
    EXPECT_EQ(host[r], expect) << "rank " << r << " (host memory)";
    EXPECT_EQ(device[r], expect) << "rank " << r << " (device memory)";
  }
}

// The CPU reference's data-parallel MoE (engine/cpu_moe_dispatch.cpp) over NCCL's host path, one
// rank per GPU, each running its own sequence: bit-identical to one process (as parallel_dp_test
// shows over the thread double).
TEST(NcclCommunicator, DataParallelCpuModelOverNcclMatchesOneProcess) {
  const int world = std::min(gpu_count(), 4);
  if (world < 2) GTEST_SKIP() << "needs two or more GPUs (found " << world << ")";
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  const Model& m = demo_model();
  const auto run = [&](CpuBackend& backend, const std::vector<int>& seqs) {
    std::vector<std::unique_ptr<ContiguousKv>> kv;
    std::vector<std::vector<int32_t>> input;
    for (int s : seqs) kv.push_back(std::make_unique<ContiguousKv>(m.config)), input.push_back(random_tokens(5 + 7 * s, s));
    std::vector<std::vector<float>> logits(seqs.size());
    for (int step = 0; step < 3; ++step) {
      ForwardBatch batch;
      for (size_t i = 0; i < seqs.size(); ++i) batch.sequences.push_back({kv[i].get(), input[i], false});
      const ForwardOutput out = backend.forward(batch);
      for (size_t i = 0; i < seqs.size(); ++i) {
        const float* row = out.row(i);
        logits[i].insert(logits[i].end(), row, row + out.n_vocab);
        input[i] = {static_cast<int32_t>(std::max_element(row, row + out.n_vocab) - row)};
      }
    }
    return logits;
  };
  std::vector<int> all;
  for (int s = 0; s < world - 1; ++s) all.push_back(s);  // the last rank has no sequence
  CpuBackend single(m.config, m.weights, {}, 2);
  const std::vector<std::vector<float>> reference = run(single, all);
  const NcclId id = nccl_new_id();
  std::vector<std::string> errors(world);
  std::vector<std::vector<std::vector<float>>> got(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        NcclCommunicator comm(id, r, world, r);
        CpuBackend backend(m.config, m.weights, {}, 1,
                           ExpertParallel(&comm, expert_shard(r, world, m.config.n_expert), true));
        got[r] = run(backend, r + 1 < world ? std::vector<int>{r} : std::vector<int>{});
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    EXPECT_EQ(errors[r], "") << "rank " << r;
    if (r + 1 < world) {
      ASSERT_EQ(got[r].size(), 1u);
      EXPECT_EQ(got[r][0], reference[r]) << "rank " << r;
    }
  }
}

TEST(NcclCommunicator, ExpertParallelModelOverNcclAgreesWithOneRank) {
  const int gpus = gpu_count();
  if (gpus < 2) GTEST_SKIP() << "needs two or more GPUs (found " << gpus << ")";
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  CudaBackend::select_device(0);
  CudaBackend single(demo_model().config, demo_model().weights, options(0, nullptr, 1));
  const RankRun reference = run_rank(single);
  for (int world : {2, 4}) {
    if (world > gpus) break;
    const NcclId id = nccl_new_id();
    const auto runs = run_world(world, [&](int r) { return std::make_unique<NcclCommunicator>(id, r, world, r); },
                                [](int r) { return r; });
    expect_runs_agree(runs, reference, world);
  }
}
#endif

}  // namespace
}  // namespace ds4
