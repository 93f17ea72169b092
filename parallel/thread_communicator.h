// ThreadGroup / ThreadCommunicator: a TEST DOUBLE of Communicator, not a transport: the ranks are
// threads of one process that meet at each collective (a generation-counted rendezvous). Sums are
// taken in rank order on every rank, so all ranks get the same bits. abort() (a rank "dying") makes
// every waiting and later collective of the group throw CommError instead of hanging; a wait longer
// than the group's timeout throws too. Used by the CPU tests of expert parallelism.
#pragma once
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "parallel/communicator.h"

namespace ds4 {

class ThreadGroup {
 public:
  explicit ThreadGroup(int world, std::chrono::milliseconds timeout = std::chrono::seconds(60));
  int world() const { return world_; }
  // Every current and later collective throws CommError(reason).
  void abort(const std::string& reason);

 private:
  friend class ThreadCommunicator;
  // Waits until all ranks have arrived at this round; `deposit` runs under the lock on arrival.
  template <typename Deposit>
  void rendezvous(Deposit deposit);

  const int world_;
  const std::chrono::milliseconds timeout_;
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  unsigned long long generation_ = 0;
  std::string abort_reason_;
  std::vector<const void*> slots_;  // per rank: what it deposited this round
  // all_to_all_v: per rank, its send / receive segment sizes this round
  std::vector<std::span<const size_t>> send_sizes_, recv_sizes_;
  std::vector<size_t> counts_;  // all_gather / reduce_scatter_sum: per rank, its size this round
};

class ThreadCommunicator final : public Communicator {
 public:
  // group must outlive the communicator; rank in [0, group.world()).
  ThreadCommunicator(ThreadGroup& group, int rank);
  int rank() const override { return rank_; }
  int world() const override { return group_.world(); }
  void all_reduce_sum(float* data, size_t count, void* stream) override;
  void broadcast(void* data, size_t bytes, int root) override;
  void barrier() override;
  void all_to_all_v(const void* send, std::span<const size_t> send_bytes, void* recv,
                    std::span<const size_t> recv_bytes, void* stream) override;
  void all_gather(const void* send, void* recv, size_t bytes, void* stream) override;
  void reduce_scatter_sum(const float* send, float* recv, size_t count, void* stream) override;
  std::string name() const override { return "threads (test double)"; }

 private:
  std::string size_mismatch() const;  // all_to_all_v: why the ranks' sizes disagree, or empty
  // all_gather / reduce_scatter_sum: publishes `data` and `count`; after it every rank's are readable.
  // Throws CommError (on every rank, after the group's second meeting) when the counts differ.
  void publish_equal(const void* data, size_t count, const char* what);

  ThreadGroup& group_;
  int rank_;
};

}  // namespace ds4
