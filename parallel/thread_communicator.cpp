// In-process Communicator test double (see thread_communicator.h). Each collective is two
// rendezvous: the first publishes every rank's pointer, the second keeps the buffers alive until
// every rank has read them.
#include "parallel/thread_communicator.h"

#include <cstring>
#include <string>

namespace ds4 {

ThreadGroup::ThreadGroup(int world, std::chrono::milliseconds timeout)
    : world_(world), timeout_(timeout), slots_(world > 0 ? world : 0),
      send_sizes_(slots_.size()), recv_sizes_(slots_.size()), counts_(slots_.size(), 0) {
  if (world < 1) throw std::invalid_argument("ThreadGroup: world must be >= 1");
}

void ThreadGroup::abort(const std::string& reason) {
  std::lock_guard lock(mutex_);
  if (abort_reason_.empty()) abort_reason_ = reason.empty() ? "aborted" : reason;
  cv_.notify_all();
}

template <typename Deposit>
void ThreadGroup::rendezvous(Deposit deposit) {
  std::unique_lock lock(mutex_);
  if (!abort_reason_.empty()) throw CommError("communicator aborted: " + abort_reason_);
  deposit();
  const unsigned long long my_generation = generation_;
  if (++arrived_ == world_) {
    arrived_ = 0;
    ++generation_;
    cv_.notify_all();
    return;
  }
  const bool done = cv_.wait_for(lock, timeout_, [&] { return generation_ != my_generation || !abort_reason_.empty(); });
  if (generation_ != my_generation) return;  // completed, even if an abort came afterwards
  if (!done) {
    abort_reason_ = "a collective waited longer than the timeout (a rank is gone)";
    cv_.notify_all();
  }
  throw CommError("communicator aborted: " + abort_reason_);
}

ThreadCommunicator::ThreadCommunicator(ThreadGroup& group, int rank) : group_(group), rank_(rank) {
  if (rank < 0 || rank >= group.world()) throw std::invalid_argument("ThreadCommunicator: rank out of range");
}

void ThreadCommunicator::all_reduce_sum(float* data, size_t count, void* stream) {
  if (stream) throw CommError("the thread test double reduces host memory only (stream must be null)");
  std::vector<float> sum(count, 0.0f);
  group_.rendezvous([&] { group_.slots_[rank_] = data; });
  for (int r = 0; r < group_.world(); ++r) {  // rank order on every rank: identical bits
    const float* src = static_cast<const float*>(group_.slots_[r]);
    for (size_t i = 0; i < count; ++i) sum[i] += src[i];
  }
  group_.rendezvous([] {});  // nobody writes its buffer before every rank has read it
  std::memcpy(data, sum.data(), count * sizeof(float));
}

void ThreadCommunicator::broadcast(void* data, size_t bytes, int root) {
  if (root < 0 || root >= group_.world()) throw CommError("broadcast: root rank out of range");
  group_.rendezvous([&] { group_.slots_[rank_] = data; });
  if (rank_ != root && bytes) std::memcpy(data, group_.slots_[root], bytes);
  group_.rendezvous([] {});
}

void ThreadCommunicator::barrier() { group_.rendezvous([] {}); }

namespace {

size_t segment_offset(std::span<const size_t> sizes, int upto) {
  size_t offset = 0;
  for (int q = 0; q < upto; ++q) offset += sizes[q];
  return offset;
}

}  // namespace

// The size matrix every rank agrees on, or why not (empty: consistent).
std::string ThreadCommunicator::size_mismatch() const {
  const int world = group_.world();
  for (int r = 0; r < world; ++r)
    if (group_.send_sizes_[r].size() != size_t(world) || group_.recv_sizes_[r].size() != size_t(world))
      return "rank " + std::to_string(r) + " did not give one size per rank";
  for (int r = 0; r < world; ++r)
    for (int p = 0; p < world; ++p)
      if (group_.send_sizes_[r][p] != group_.recv_sizes_[p][r])
        return "rank " + std::to_string(r) + " sends " + std::to_string(group_.send_sizes_[r][p]) + " bytes to rank " +
               std::to_string(p) + ", which expects " + std::to_string(group_.recv_sizes_[p][r]);
  return {};
}

// Every rank checks the whole size matrix after the first rendezvous (they all see the same sizes,
// so they all copy or all throw), copies its segment from each peer, and leaves only after the
// second rendezvous (a peer's buffers and sizes stay alive until every rank is done with them).
void ThreadCommunicator::all_to_all_v(const void* send, std::span<const size_t> send_bytes, void* recv,
                                      std::span<const size_t> recv_bytes, void* stream) {
  if (stream) throw CommError("the thread test double moves host memory only (stream must be null)");
  group_.rendezvous([&] {
    group_.slots_[rank_] = send;
    group_.send_sizes_[rank_] = send_bytes;
    group_.recv_sizes_[rank_] = recv_bytes;
  });
  const std::string mismatch = size_mismatch();
  for (int q = 0; mismatch.empty() && q < group_.world(); ++q) {
    const size_t bytes = recv_bytes[q];
    if (bytes == 0) continue;
    const char* src = static_cast<const char*>(group_.slots_[q]) + segment_offset(group_.send_sizes_[q], rank_);
    std::memcpy(static_cast<char*>(recv) + segment_offset(recv_bytes, q), src, bytes);
  }
  group_.rendezvous([] {});
  if (!mismatch.empty()) throw CommError("all_to_all_v: " + mismatch);
}

void ThreadCommunicator::publish_equal(const void* data, size_t count, const char* what) {
  group_.rendezvous([&] {
    group_.slots_[rank_] = data;
    group_.counts_[rank_] = count;
  });
  for (int r = 0; r < group_.world(); ++r)
    if (group_.counts_[r] != group_.counts_[0]) {
      // Worded before the meeting that lets the others go on (and overwrite the counts).
      const std::string why = std::string(what) + ": rank " + std::to_string(r) + " gives " +
                              std::to_string(group_.counts_[r]) + ", rank 0 " + std::to_string(group_.counts_[0]);
      group_.rendezvous([] {});
      throw CommError(why);
    }
}

void ThreadCommunicator::all_gather(const void* send, void* recv, size_t bytes, void* stream) {
  if (stream) throw CommError("the thread test double moves host memory only (stream must be null)");
  publish_equal(send, bytes, "all_gather");
  for (int r = 0; r < group_.world() && bytes; ++r)
    std::memcpy(static_cast<char*>(recv) + size_t(r) * bytes, group_.slots_[r], bytes);
  group_.rendezvous([] {});
}

void ThreadCommunicator::reduce_scatter_sum(const float* send, float* recv, size_t count, void* stream) {
  if (stream) throw CommError("the thread test double reduces host memory only (stream must be null)");
  publish_equal(send, count, "reduce_scatter_sum");
  std::vector<float> sum(count, 0.0f);
  for (int r = 0; r < group_.world(); ++r) {  // rank order on every rank, as all_reduce_sum
    const float* block = static_cast<const float*>(group_.slots_[r]) + size_t(rank_) * count;
    for (size_t i = 0; i < count; ++i) sum[i] += block[i];
  }
  group_.rendezvous([] {});  // recv may lie inside the own send buffer: written once every rank has read
  if (count) std::memcpy(recv, sum.data(), count * sizeof(float));
}

}  // namespace ds4
