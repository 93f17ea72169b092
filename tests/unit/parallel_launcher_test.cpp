// The rank launcher of `ds4serve --gpus` (parallel/launcher.h), with /bin/sh standing in for the
// ranks: every rank gets its environment and arguments; all ranks exiting 0 is success; one rank
// failing stops the others (SIGTERM) and the result names it; a rank that cannot be run counts as
// failed; a stop request ends every rank.
#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "parallel/launcher.h"

namespace ds4 {
namespace {

using namespace std::chrono_literals;

RankCommand sh(const std::string& script) { return {{"/bin/sh", "-c", script}, {}}; }

std::string temp_path(const std::string& name) {
  return testing::TempDir() + "ds4_launcher_" + std::to_string(getpid()) + "_" + name;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(RankLauncher, GpuRankCommandsCarryRankWorldMasterAndEnvironment) {
  const auto cmds = gpu_rank_commands("/usr/bin/ds4serve", {"--backend", "cuda", "--port", "8000"}, {2, 5}, 29500);
  ASSERT_EQ(cmds.size(), 2u);
  EXPECT_EQ(cmds[1].argv, (std::vector<std::string>{"/usr/bin/ds4serve", "--backend", "cuda", "--port", "8000", "--rank", "1",
                                                    "--world", "2", "--master", "127.0.0.1:29500"}));
  EXPECT_EQ(cmds[1].env, (std::vector<std::pair<std::string, std::string>>{{"CUDA_VISIBLE_DEVICES", "5"}, {"NCCL_NVLS_ENABLE", "0"}}));
}

TEST(RankLauncher, EveryRankRunsWithItsEnvironment) {
  std::vector<RankCommand> ranks;
  for (int r = 0; r < 3; ++r) {
    RankCommand c = sh("echo \"$CUDA_VISIBLE_DEVICES $NCCL_NVLS_ENABLE $0\" > " + temp_path(std::to_string(r)));
    c.argv.push_back("rank" + std::to_string(r));
    c.env = {{"CUDA_VISIBLE_DEVICES", std::to_string(7 - r)}, {"NCCL_NVLS_ENABLE", "0"}};
    ranks.push_back(c);
  }
  const LaunchResult res = launch_ranks(ranks, 2s);
  EXPECT_TRUE(res.ok) << res.message;
  EXPECT_EQ(res.message, "");
  for (int r = 0; r < 3; ++r) EXPECT_EQ(read_file(temp_path(std::to_string(r))), std::to_string(7 - r) + " 0 rank" + std::to_string(r) + "\n");
}

TEST(RankLauncher, AFailingRankStopsTheOthersAndIsNamed) {
  const LaunchResult res = launch_ranks({sh("exec sleep 60"), sh("sleep 0.1; exit 3"), sh("exec sleep 60")}, 5s);
  EXPECT_FALSE(res.ok);
  EXPECT_EQ(res.first_failed_rank, 1);
  EXPECT_EQ(res.message, "rank 1 exited with status 3; the other ranks were stopped");
  EXPECT_TRUE(res.ranks[0].stopped_by_launcher);
  EXPECT_EQ(res.ranks[0].signal, SIGTERM);
  EXPECT_EQ(res.ranks[2].signal, SIGTERM);
}

TEST(RankLauncher, StoppingARankStopsWhatItStarted) {
  const std::string marker = temp_path("grandchild");
  // The rank starts a background child, then fails; the child must not outlive the launch.
  const LaunchResult res = launch_ranks({sh("(sleep 0.5; echo alive > " + marker + ") & exec sleep 60"), sh("sleep 0.1; exit 2")}, 2s);
  EXPECT_EQ(res.first_failed_rank, 1);
  std::this_thread::sleep_for(700ms);
  EXPECT_EQ(read_file(marker), "") << "a rank's child survived the launcher's stop";
}

TEST(RankLauncher, ARankThatIgnoresSigtermIsKilledAfterTheGrace) {
  // Rank 1 fails only once rank 0 ignores SIGTERM (else, on a busy machine, the launcher's SIGTERM
  // could reach rank 0's shell before its trap and end it by SIGTERM).
  const std::string ignoring = temp_path("ignoring_term");
  const LaunchResult res = launch_ranks({sh("trap '' TERM; echo yes > " + ignoring + "; exec sleep 60"),
                                         sh("while [ ! -s " + ignoring + " ]; do sleep 0.01; done; exit 1")},
                                        200ms);
  EXPECT_EQ(res.first_failed_rank, 1);
  EXPECT_EQ(res.ranks[0].signal, SIGKILL);
}

TEST(RankLauncher, AProgramThatCannotRunFailsItsRank) {
  const LaunchResult res = launch_ranks({sh("exec sleep 60"), {{"/nonexistent/ds4serve"}, {}}}, 2s);
  EXPECT_EQ(res.first_failed_rank, 1);
  EXPECT_NE(res.message.find("could not be run"), std::string::npos) << res.message;
}

// A stop request goes to rank 0 (which stops its followers itself); a follower that outlives rank 0
// by the grace period is killed.
TEST(RankLauncher, AStopRequestGoesToRankZeroThenTheRestAreEnded) {
  std::atomic<bool> stop{false};
  const std::string leader_done = temp_path("leader_done"), ready0 = temp_path("ready0"), ready2 = temp_path("ready2");
  std::thread stopper([&] {  // the stop request once ranks 0 and 2 have set their SIGTERM handling
    for (int i = 0; i < 1000 && (read_file(ready0).empty() || read_file(ready2).empty()); ++i)
      std::this_thread::sleep_for(10ms);
    stop = true;
  });
  // Rank 1 plays a follower that ends when "rank 0" has written its marker; rank 2 never ends.
  const LaunchResult res =
      launch_ranks({sh("trap 'echo done > " + leader_done + "; exit 0' TERM; echo yes > " + ready0 + "; sleep 60 & wait"),
                    sh("while [ ! -s " + leader_done + " ]; do sleep 0.02; done; exit 0"),
                    sh("trap '' TERM; echo yes > " + ready2 + "; exec sleep 60")},
                   300ms, &stop);
  stopper.join();
  EXPECT_FALSE(res.ok);
  EXPECT_EQ(res.first_failed_rank, -1);
  EXPECT_EQ(res.message, "stopped on request");
  EXPECT_EQ(res.ranks[0].exit_code, 0);  // drained on SIGTERM
  EXPECT_EQ(res.ranks[1].exit_code, 0);  // ended by itself, was never signalled
  EXPECT_FALSE(res.ranks[1].stopped_by_launcher);
  EXPECT_EQ(res.ranks[2].signal, SIGKILL);  // outlived rank 0 by the grace period
}

TEST(RankLauncher, RanksEndingOnTheirOwnAreASuccess) {
  const LaunchResult res = launch_ranks({sh("exit 0"), sh("sleep 0.05; exit 0")}, 2s);
  EXPECT_TRUE(res.ok);
  EXPECT_EQ(res.message, "");
}

}  // namespace
}  // namespace ds4
