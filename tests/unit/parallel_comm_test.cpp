// The in-process Communicator test double (parallel/thread_communicator.h) and expert ranges
// (parallel/expert_shard.h) and the start-up agreement (parallel/rank_setup.h): sums and broadcasts for worlds 1-4 with the same bits on every rank,
// and a "dead" rank (abort or timeout) making every other rank's collective throw instead of hang.
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "engine/model_config.h"
#include "parallel/expert_shard.h"
#include "parallel/rank_setup.h"
#include "parallel/thread_communicator.h"

namespace ds4 {
namespace {

// Runs fn(comm) on one thread per rank and joins them.
template <typename Fn>
void run_ranks(ThreadGroup& group, Fn fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < group.world(); ++r)
    threads.emplace_back([&group, &fn, r] {
      ThreadCommunicator comm(group, r);
      fn(comm);
    });
  for (auto& t : threads) t.join();
}

TEST(ThreadCommunicator, AllReduceSumsInRankOrderWithIdenticalBits) {
  for (int world : {1, 2, 3, 4}) {
    ThreadGroup group(world);
    std::vector<std::vector<float>> results(world);
    run_ranks(group, [&](Communicator& comm) {
      for (int round = 0; round < 5; ++round) {  // buffers reused across rounds
        std::vector<float> v(37);
        for (size_t i = 0; i < v.size(); ++i) v[i] = 0.1f * float(comm.rank() + 1) + 1e-3f * float(i) + float(round);
        comm.all_reduce_sum(v.data(), v.size(), nullptr);
        if (round == 4) results[comm.rank()] = v;
      }
    });
    for (size_t i = 0; i < 37; ++i) {
      float expect = 0.0f;
      for (int r = 0; r < world; ++r) expect += 0.1f * float(r + 1) + 1e-3f * float(i) + 4.0f;
      EXPECT_EQ(results[0][i], expect) << "world " << world << " element " << i;
      for (int r = 1; r < world; ++r) EXPECT_EQ(results[r][i], results[0][i]);
    }
  }
}

TEST(ThreadCommunicator, BroadcastAndBarrier) {
  ThreadGroup group(4);
  std::vector<std::string> got(4);
  run_ranks(group, [&](Communicator& comm) {
    std::string text = comm.rank() == 2 ? "step message from rank 2" : std::string(24, '?');
    comm.broadcast(text.data(), text.size(), 2);
    comm.barrier();
    got[comm.rank()] = text;
  });
  for (const std::string& s : got) EXPECT_EQ(s, "step message from rank 2");
}

// Rank r sends (r + 2 * p) % 4 values to rank p (some zero), each naming sender, receiver and index.
int32_t a2a_value(int from, int to, int i, int round) { return from * 1000000 + to * 10000 + i * 10 + round; }
size_t a2a_count(int from, int to) { return static_cast<size_t>((from + 2 * to) % 4); }

TEST(ThreadCommunicator, AllToAllWithPerPeerSizes) {
  for (int world : {1, 2, 3, 4}) {
    ThreadGroup group(world);
    std::vector<int> failures(world, 0);
    run_ranks(group, [&](Communicator& comm) {
      const int me = comm.rank();
      for (int round = 0; round < 3; ++round) {  // buffers reused across rounds
        std::vector<size_t> counts(world);
        std::vector<int32_t> send;
        for (int p = 0; p < world; ++p) {
          counts[p] = a2a_count(me, p);
          for (size_t i = 0; i < counts[p]; ++i) send.push_back(a2a_value(me, p, int(i), round));
        }
        const std::vector<size_t> incoming = all_to_all_counts(comm, counts);
        std::vector<size_t> send_bytes(world), recv_bytes(world);
        size_t total = 0;
        for (int q = 0; q < world; ++q) {
          if (incoming[q] != a2a_count(q, me)) ++failures[me];
          send_bytes[q] = counts[q] * sizeof(int32_t);
          recv_bytes[q] = incoming[q] * sizeof(int32_t);
          total += incoming[q];
        }
        std::vector<int32_t> recv(total, -1);
        comm.all_to_all_v(send.data(), send_bytes, recv.data(), recv_bytes, nullptr);
        size_t at = 0;
        for (int q = 0; q < world; ++q)
          for (size_t i = 0; i < incoming[q]; ++i)
            if (recv[at++] != a2a_value(q, me, int(i), round)) ++failures[me];
      }
    });
    for (int r = 0; r < world; ++r) EXPECT_EQ(failures[r], 0) << "world " << world << " rank " << r;
  }
}

TEST(ThreadCommunicator, AllToAllWithDisagreeingSizesThrowsOnEveryRank) {
  ThreadGroup group(2);
  std::vector<std::string> errors(2);
  run_ranks(group, [&](Communicator& comm) {
    // Rank 0 sends 8 bytes to rank 1, but rank 1 expects 4.
    const std::vector<size_t> send = {0, comm.rank() == 0 ? 8u : 0u};
    const std::vector<size_t> recv = {comm.rank() == 1 ? 4u : 0u, 0};
    char out[8] = {}, in[8] = {};
    try {
      comm.all_to_all_v(out, send, in, recv, nullptr);
    } catch (const CommError& e) {
      errors[comm.rank()] = e.what();
    }
  });
  for (const std::string& e : errors) EXPECT_NE(e.find("rank 0 sends 8 bytes to rank 1, which expects 4"), std::string::npos) << e;
}

// All-gather of a few bytes per rank and reduce-scatter of float blocks (the data-parallel MoE of
// the GPU backend), worlds 1-4, buffers reused; the reduce-scatter in place (recv inside send).
TEST(ThreadCommunicator, AllGatherAndReduceScatter) {
  for (int world : {1, 2, 3, 4}) {
    ThreadGroup group(world);
    std::vector<std::vector<int32_t>> gathered(world);
    std::vector<std::vector<float>> scattered(world);
    run_ranks(group, [&](Communicator& comm) {
      const int r = comm.rank();
      std::vector<int32_t> mine = {r, 10 * r, -r}, all(3 * world);
      std::vector<float> blocks(5 * world);
      for (int round = 0; round < 3; ++round) {
        comm.all_gather(mine.data(), all.data(), mine.size() * sizeof(int32_t), nullptr);
        for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = 0.25f * float(r + 1) + float(i) + 100.0f * float(round);
        comm.reduce_scatter_sum(blocks.data(), blocks.data() + 5 * r, 5, nullptr);
      }
      gathered[r] = all;
      scattered[r].assign(blocks.begin() + 5 * r, blocks.begin() + 5 * r + 5);
    });
    for (int r = 0; r < world; ++r) {
      SCOPED_TRACE("world " + std::to_string(world) + " rank " + std::to_string(r));
      for (int q = 0; q < world; ++q) {
        EXPECT_EQ(gathered[r][3 * q], q);
        EXPECT_EQ(gathered[r][3 * q + 1], 10 * q);
      }
      for (int i = 0; i < 5; ++i) {
        float expect = 0.0f;
        for (int q = 0; q < world; ++q) expect += 0.25f * float(q + 1) + float(5 * r + i) + 200.0f;
        EXPECT_EQ(scattered[r][i], expect) << "element " << i;
      }
    }
  }
}

TEST(ThreadCommunicator, GatherAndScatterWithDisagreeingSizesThrowOnEveryRank) {
  ThreadGroup group(3);
  std::vector<std::string> errors(3);
  run_ranks(group, [&](Communicator& comm) {
    std::vector<float> buf(64);
    try {
      comm.all_gather(buf.data(), buf.data(), comm.rank() == 1 ? 8 : 4, nullptr);
    } catch (const CommError& e) {
      errors[comm.rank()] = e.what();
    }
    try {
      comm.reduce_scatter_sum(buf.data(), buf.data(), comm.rank() == 2 ? 3 : 2, nullptr);
      errors[comm.rank()] += " | no error";
    } catch (const CommError& e) {
      errors[comm.rank()] += std::string(" | ") + e.what();
    }
  });
  for (const std::string& e : errors) EXPECT_EQ(e, "all_gather: rank 1 gives 8, rank 0 4 | reduce_scatter_sum: rank 2 gives 3, rank 0 2");
}

TEST(ThreadCommunicator, AbortedRankMakesOthersThrowInsteadOfHanging) {
  ThreadGroup group(3);
  std::vector<std::string> errors(3);
  run_ranks(group, [&](Communicator& comm) {
    try {
      if (comm.rank() == 1) {
        group.abort("rank 1 died");  // never reaches the collective
        return;
      }
      float x = 1.0f;
      comm.all_reduce_sum(&x, 1, nullptr);
    } catch (const CommError& e) {
      errors[comm.rank()] = e.what();
    }
  });
  EXPECT_NE(errors[0].find("rank 1 died"), std::string::npos) << errors[0];
  EXPECT_NE(errors[2].find("rank 1 died"), std::string::npos) << errors[2];
}

TEST(ThreadCommunicator, MissingRankTimesOut) {
  ThreadGroup group(2, std::chrono::milliseconds(50));
  ThreadCommunicator alone(group, 0);  // rank 1 never comes
  EXPECT_THROW(alone.barrier(), CommError);
  EXPECT_THROW(alone.barrier(), CommError);  // stays failed
}

TEST(ThreadCommunicator, RefusesDeviceStreamsAndBadRanks) {
  ThreadGroup group(1);
  ThreadCommunicator comm(group, 0);
  float x = 1.0f;
  int fake_stream = 0;
  EXPECT_THROW(comm.all_reduce_sum(&x, 1, &fake_stream), CommError);
  EXPECT_THROW(comm.broadcast(&x, 4, 1), CommError);
  EXPECT_THROW(ThreadCommunicator(group, 1), std::invalid_argument);
  EXPECT_THROW(ThreadGroup(0), std::invalid_argument);
}

TEST(RankSetup, FollowersAdoptRankZerosPoolAndRefuseAnotherModel) {
  const ModelConfig tiny = preset_tiny(), small = preset_small();
  EXPECT_NE(config_fingerprint(tiny), config_fingerprint(small));
  EXPECT_EQ(config_fingerprint(tiny), config_fingerprint(preset_tiny()));
  ThreadGroup group(3);
  std::vector<RankSetup> got(3);
  std::vector<std::string> errors(3);
  run_ranks(group, [&](Communicator& comm) {
    RankSetup mine{3, config_fingerprint(comm.rank() == 2 ? small : tiny), 100 + comm.rank(), 8, 4};
    try {
      got[comm.rank()] = exchange_setup(comm, mine);
    } catch (const CommError& e) {
      errors[comm.rank()] = e.what();
    }
  });
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  EXPECT_EQ(got[1].num_blocks, 100);  // rank 0's pool
  EXPECT_EQ(got[1].num_slots, 8);
  EXPECT_NE(errors[2].find("its model differs from rank 0's"), std::string::npos) << errors[2];
}

// Data-parallel attention: each rank keeps its own pool counts and learns everybody's.
TEST(RankSetup, DataParallelRanksGatherEveryRanksPool) {
  ThreadGroup group(3);
  std::vector<std::vector<RankSetup>> got(3);
  run_ranks(group, [&](Communicator& comm) {
    const RankSetup mine{3, config_fingerprint(preset_tiny()), 100 + comm.rank(), 8 - comm.rank(), 4};
    got[comm.rank()] = gather_setups(comm, mine);
  });
  for (int r = 0; r < 3; ++r) {
    ASSERT_EQ(got[r].size(), 3u);
    for (int q = 0; q < 3; ++q) {
      EXPECT_EQ(got[r][q].num_blocks, 100 + q);
      EXPECT_EQ(got[r][q].num_slots, 8 - q);
      EXPECT_EQ(got[r][q].num_snapshots, 4);
    }
  }
}

TEST(RankSetup, KvBudgetIsTheSmallestOfTheGroup) {
  const std::vector<int64_t> budgets = {int64_t(90) << 30, int64_t(91) << 30, (int64_t(89) << 30) + 5, int64_t(95) << 30};
  for (int world : {1, 2, 3, 4}) {
    ThreadGroup group(world);
    std::vector<int64_t> got(world, -1);
    run_ranks(group, [&](Communicator& comm) { got[comm.rank()] = min_over_ranks(comm, budgets[comm.rank()]); });
    const int64_t least = *std::min_element(budgets.begin(), budgets.begin() + world);
    for (int r = 0; r < world; ++r) EXPECT_EQ(got[r], least) << "world " << world << " rank " << r;
  }
}

// Runs check_expert_ranges with ranges(rank) on every rank of a world; returns each rank's error.
template <typename Ranges>
std::vector<std::string> expert_range_errors(int world, int n_expert, Ranges ranges) {
  ThreadGroup group(world);
  std::vector<std::string> errors(world);
  run_ranks(group, [&](Communicator& comm) {
    try {
      check_expert_ranges(comm, ranges(comm.rank()), n_expert);
    } catch (const CommError& e) {
      errors[comm.rank()] = e.what();
    }
  });
  return errors;
}

TEST(RankSetup, ExpertRangesMustTileTheExperts) {
  for (int world : {1, 2, 3, 4})
    for (const std::string& e : expert_range_errors(world, 256, [&](int r) { return expert_shard(r, world, 256); }))
      EXPECT_EQ(e, "") << "world " << world;
  // Rank 1 computed its range for another world: an overlap, seen by every rank.
  for (const std::string& e : expert_range_errors(3, 256, [](int r) { return expert_shard(r, r == 1 ? 2 : 3, 256); }))
    EXPECT_NE(e.find("rank 1 owns [128, 256) but should start at 85"), std::string::npos) << e;
  // Ranges that stop short of the last expert (the ranks disagree on the expert count).
  for (const std::string& e : expert_range_errors(2, 256, [](int r) { return expert_shard(r, 2, 128); }))
    EXPECT_NE(e.find("cover 128 of the 256 routed experts"), std::string::npos) << e;
}

TEST(ExpertShard, ContiguousRangesCoverEveryExpertOnce) {
  for (int world : {1, 2, 3, 4, 7, 8, 16}) {
    int next = 0;
    for (int r = 0; r < world; ++r) {
      const ExpertShard s = expert_shard(r, world, 256);
      EXPECT_EQ(s.first, next);
      EXPECT_GE(s.count, 256 / world);
      EXPECT_LE(s.count, 256 / world + 1);
      next = s.first + s.count;
    }
    EXPECT_EQ(next, 256);
  }
  EXPECT_EQ(expert_shard(1, 4, 256).first, 64);
  EXPECT_TRUE(expert_shard(1, 4, 256).owns(127));
  EXPECT_FALSE(expert_shard(1, 4, 256).owns(128));
  EXPECT_THROW(expert_shard(4, 4, 256), std::invalid_argument);
  EXPECT_THROW(expert_shard(0, 17, 16), std::invalid_argument);
}

}  // namespace
}  // namespace ds4
