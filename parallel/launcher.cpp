// Rank launcher (see launcher.h): fork + execve per rank (each in its own process group), a
// waitpid polling loop, SIGTERM then SIGKILL to the survivors' groups once one rank has failed.
#include "parallel/launcher.h"

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

extern char** environ;

namespace ds4 {
namespace {

// The inherited environment with `env` set on top, as "NAME=value" strings.
std::vector<std::string> child_environment(const std::vector<std::pair<std::string, std::string>>& env) {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& [k, v] : env) replaced = replaced || k == name;
    if (!replaced) out.push_back(entry);
  }
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> p;
  for (std::string& s : strings) p.push_back(s.data());
  p.push_back(nullptr);
  return p;
}

pid_t start_rank(const RankCommand& command) {
  if (command.argv.empty()) return -1;
  std::vector<std::string> argv = command.argv, envp = child_environment(command.env);
  std::vector<char*> argv_p = pointers(argv), envp_p = pointers(envp);  // built before fork
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);  // its own process group: stopping a rank stops whatever it started too
    execve(argv_p[0], argv_p.data(), envp_p.data());
    _exit(127);  // could not run it
  }
  if (pid > 0) setpgid(pid, pid);  // also here, so a stop right after the fork reaches the group
  return pid;
}

void record_status(RankExit& r, int status) {
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
}

bool failed(const RankExit& r) { return r.signal != 0 || r.exit_code != 0; }

}  // namespace

std::string RankExit::describe() const {
  if (!started) return "could not be started";
  if (signal) return std::string(stopped_by_launcher ? "stopped by the launcher (signal " : "killed by signal ") +
                     std::to_string(signal) + (stopped_by_launcher ? ")" : "");
  if (exit_code == 127) return "exited with status 127 (the program could not be run)";
  return "exited with status " + std::to_string(exit_code);
}

std::vector<RankCommand> gpu_rank_commands(const std::string& self, const std::vector<std::string>& args,
                                           const std::vector<int>& gpus, int port) {
  std::vector<RankCommand> out;
  const int world = static_cast<int>(gpus.size());
  for (int r = 0; r < world; ++r) {
    RankCommand c;
    c.argv.push_back(self);
    c.argv.insert(c.argv.end(), args.begin(), args.end());
    for (std::string s : {std::string("--rank"), std::to_string(r), std::string("--world"), std::to_string(world),
                          std::string("--master"), "127.0.0.1:" + std::to_string(port)})
      c.argv.push_back(s);
    c.env = {{"CUDA_VISIBLE_DEVICES", std::to_string(gpus[r])}, {"NCCL_NVLS_ENABLE", "0"}};
    out.push_back(std::move(c));
  }
  return out;
}

namespace {

// The supervision loop's state: who is alive, who failed, what was sent to whom.
class Supervisor {
 public:
  Supervisor(std::vector<pid_t> pids, LaunchResult& result, std::chrono::milliseconds grace)
      : pids_(std::move(pids)), result_(result), grace_(grace) {}
  bool any_alive() const { return std::any_of(pids_.begin(), pids_.end(), [](pid_t p) { return p > 0; }); }

  // One round: collect exits, then escalate (see launch_ranks in launcher.h).
  void round(bool stop_requested) {
    reap();
    const auto now = Clock::now();
    if (result_.first_failed_rank >= 0 && !all_terminated_) {  // a rank failed: stop every other one
      all_terminated_ = true;
      all_deadline_ = now + grace_;
      for (size_t r = 0; r < pids_.size(); ++r) send(r, SIGTERM);
    } else if (stop_requested && !leader_terminated_) {  // rank 0 drains, then stops the followers itself
      leader_terminated_ = true;
      send(0, SIGTERM);
    }
    if (pids_[0] <= 0 && rest_deadline_ == Clock::time_point::max()) rest_deadline_ = now + grace_;
    if (now > rest_deadline_ || (all_terminated_ && now > all_deadline_))
      for (size_t r = 0; r < pids_.size(); ++r) send(r, SIGKILL);
  }

 private:
  using Clock = std::chrono::steady_clock;
  std::vector<pid_t> pids_;
  LaunchResult& result_;
  std::chrono::milliseconds grace_;
  bool all_terminated_ = false, leader_terminated_ = false;
  Clock::time_point all_deadline_ = Clock::time_point::max(), rest_deadline_ = Clock::time_point::max();

  void reap() {
    for (size_t r = 0; r < pids_.size(); ++r) {
      int status = 0;
      if (pids_[r] <= 0 || waitpid(pids_[r], &status, WNOHANG) != pids_[r]) continue;
      record_status(result_.ranks[r], status);
      pids_[r] = -1;
      if (failed(result_.ranks[r]) && !result_.ranks[r].stopped_by_launcher && result_.first_failed_rank < 0)
        result_.first_failed_rank = static_cast<int>(r);
    }
  }
  void send(size_t r, int sig) {  // to the rank's whole process group
    if (pids_[r] <= 0) return;
    kill(-pids_[r], sig);
    result_.ranks[r].stopped_by_launcher = true;
  }
};

}  // namespace

LaunchResult launch_ranks(const std::vector<RankCommand>& ranks, std::chrono::milliseconds grace, const std::atomic<bool>* stop) {
  LaunchResult result;
  result.ranks.resize(ranks.size());
  if (ranks.empty()) return result.ok = true, result;
  std::vector<pid_t> pids(ranks.size(), -1);
  for (size_t r = 0; r < ranks.size(); ++r) {
    pids[r] = start_rank(ranks[r]);
    result.ranks[r].started = pids[r] > 0;
    if (pids[r] <= 0 && result.first_failed_rank < 0) result.first_failed_rank = static_cast<int>(r);
  }
  Supervisor supervisor(std::move(pids), result, grace);
  for (;;) {
    supervisor.round(stop && stop->load());
    if (!supervisor.any_alive()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const bool stopped = stop && stop->load();
  result.ok = result.first_failed_rank < 0 && !stopped;
  if (result.first_failed_rank >= 0)
    result.message = "rank " + std::to_string(result.first_failed_rank) + " " +
                     result.ranks[result.first_failed_rank].describe() + "; the other ranks were stopped";
  else if (stopped)
    result.message = "stopped on request";
  return result;
}

}  // namespace ds4
