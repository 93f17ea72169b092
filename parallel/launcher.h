// Rank launcher of `ds4serve --gpus LIST` (docs/PARALLEL.md sections 1 and 9): one child process
// per rank with its own environment (CUDA_VISIBLE_DEVICES, NCCL_NVLS_ENABLE=0, ...), supervised
// until all have ended. When a rank fails (non-zero exit or a signal) the others get SIGTERM, then
// SIGKILL after a grace period, and the result names the rank that failed first. A stop request
// (the launcher's own SIGTERM) goes to rank 0 only, which drains and then stops the followers
// itself (its step message); ranks still alive a grace period after rank 0 ended are killed.
// Each rank runs in its own process group, and signals reach the whole group. POSIX only; called
// by ds4serve's main.
#pragma once
#include <atomic>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace ds4 {

struct RankCommand {
  std::vector<std::string> argv;                            // argv[0]: the executable's path
  std::vector<std::pair<std::string, std::string>> env;     // set (or replaced) in the inherited environment
};

struct RankExit {
  bool started = false;
  int exit_code = -1;     // when it exited
  int signal = 0;         // when a signal ended it
  bool stopped_by_launcher = false;
  std::string describe() const;  // "exited with status 3", "killed by signal 9", ...
};

struct LaunchResult {
  bool ok = false;            // every rank exited with status 0
  int first_failed_rank = -1;
  std::vector<RankExit> ranks;
  std::string message;        // "" when ok, else what happened, naming the rank
};

// The per-rank commands for --gpus: `self` with `args` (the launcher's own arguments without
// --gpus) plus --rank r --world W --master 127.0.0.1:port, and CUDA_VISIBLE_DEVICES=gpus[r],
// NCCL_NVLS_ENABLE=0 in the environment.
std::vector<RankCommand> gpu_rank_commands(const std::string& self, const std::vector<std::string>& args,
                                           const std::vector<int>& gpus, int port);

// Starts every rank and waits for all of them (see the file comment). `stop`, when set, is polled.
// Never throws for a rank that cannot start: that rank fails with exit code 127 and the others are
// stopped.
LaunchResult launch_ranks(const std::vector<RankCommand>& ranks, std::chrono::milliseconds grace,
                          const std::atomic<bool>* stop = nullptr);

}  // namespace ds4
