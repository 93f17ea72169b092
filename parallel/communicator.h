// Communicator: the collectives expert parallelism needs (docs/PARALLEL.md section 4), with one
// implementation per transport: NCCL across GPUs and hosts (parallel/nccl_communicator.h, CUDA
// build only) and an in-process test double over threads (parallel/thread_communicator.h). Every
// rank calls the same collectives in the same order; a failure (peer gone, timeout, transport
// error) throws CommError, which the engine loop turns into its fatal error. One thread per rank.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>

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
  // Returns when the work enqueued on `stream` (collectives included) has finished, throwing
  // CommError instead of waiting forever when a peer failed. Null stream / host transports: no-op.
  virtual void wait(void* stream) { (void)stream; }
  // Names the transport in messages ("nccl", "threads (test double)").
  virtual std::string name() const = 0;
};

}  // namespace ds4
