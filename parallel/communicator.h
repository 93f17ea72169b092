// Communicator: the collectives expert parallelism needs (docs/PARALLEL.md section 4), with one
// implementation per transport: NCCL across GPUs and hosts (parallel/nccl_communicator.h, CUDA
// build only) and an in-process test double over threads (parallel/thread_communicator.h). Every
// rank calls the same collectives in the same order; a failure (peer gone, timeout, transport
// error) throws CommError, which the engine loop turns into its fatal error. One thread per rank.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace ds4 {

class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // In place: data[i] = sum over ranks of data[i], the same bits on every rank. `stream` is the
  // cudaStream_t the data is ordered on (device memory, NCCL) or null (host memory, test double);
  // with a stream the call only enqueues the reduction.
  virtual void all_reduce_sum(float* data, size_t count, void* stream) = 0;
  // Host bytes of `root` into `data` on every other rank (bytes equal on every rank).
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  // Returns when every rank has called it.
  virtual void barrier() = 0;
  // All-to-all with per-peer sizes (the data-parallel MoE's dispatch and combine). `send` holds
  // world() segments back to back in rank order, segment p (send_bytes[p] bytes) going to rank p;
  // `recv` receives segment q of every rank q back to back in rank order (recv_bytes[q] bytes each).
  // Both spans have world() entries; send_bytes[p] on rank r must equal recv_bytes[r] on rank p
  // (all_to_all_counts below tells each rank what it receives); the own segment (p == rank) is copied.
  // Zero-byte segments are allowed, and every rank takes part even with nothing to send.
  // `stream`: as all_reduce_sum (device memory, enqueued) or null (host memory, returns when done).
  virtual void all_to_all_v(const void* send, std::span<const size_t> send_bytes, void* recv,
                            std::span<const size_t> recv_bytes, void* stream) = 0;
  // Every rank's `bytes` bytes at `send`, back to back in rank order, into `recv` (world() x bytes)
  // on every rank; `bytes` must be the same on every rank. `stream`: as all_reduce_sum.
  virtual void all_gather(const void* send, void* recv, size_t bytes, void* stream) = 0;
  // `send` holds world() blocks of `count` floats (the same count on every rank); rank r receives in
  // `recv` the sum over ranks of their block r (the same bits on every rank that receives the
  // block: one sum per element). `stream`: as all_reduce_sum.
  virtual void reduce_scatter_sum(const float* send, float* recv, size_t count, void* stream) = 0;
  // Returns when the work enqueued on `stream` (collectives included) has finished, throwing
  // CommError instead of waiting forever when a peer failed. Null stream / host transports: no-op.
  virtual void wait(void* stream) { (void)stream; }
  // Names the transport in messages ("nccl", "threads (test double)").
  virtual std::string name() const = 0;
};

// What each rank sends to every other: counts[p] is this rank's count for rank p; returns, per rank q,
// rank q's count for this rank (an all-to-all of one 8-byte value per peer, host memory).
inline std::vector<size_t> all_to_all_counts(Communicator& comm, const std::vector<size_t>& counts) {
  const size_t world = static_cast<size_t>(comm.world());
  if (counts.size() != world) throw CommError("all_to_all_counts: one count per rank expected");
  std::vector<uint64_t> send(counts.begin(), counts.end()), recv(world, 0);
  const std::vector<size_t> bytes(world, sizeof(uint64_t));
  comm.all_to_all_v(send.data(), bytes, recv.data(), bytes, nullptr);
  return std::vector<size_t>(recv.begin(), recv.end());
}

}  // namespace ds4
