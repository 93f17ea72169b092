// NcclCommunicator: Communicator over NCCL (docs/PARALLEL.md section 4), one per rank and GPU.
// The communicator is non-blocking (ncclConfig_t::blocking = 0), so every wait polls
// ncclCommGetAsyncError and the stream with a deadline: a peer that died or hangs turns into
// ncclCommAbort and a CommError naming the cause, never a hang. all_reduce_sum enqueues on the
// caller's stream (device memory); broadcast and barrier run on an own stream through a device
// staging buffer and return when done. Needs NCCL_NVLS_ENABLE=0 in the environment (checked: NVLink
// multicast needs cuMulticastCreate, which the machines here refuse). CUDA builds only.
#pragma once
#include <array>
#include <chrono>
#include <string>

#include "parallel/communicator.h"

namespace ds4 {

// The 128 bytes rank 0 creates and every rank needs to join (ncclUniqueId), sent by the launcher.
using NcclId = std::array<char, 128>;
// A new id (rank 0 only). Throws CommError.
NcclId nccl_new_id();
// Hex text of an id (to pass through an environment variable or a socket) and back; from_hex
// throws CommError on malformed text.
std::string nccl_id_to_hex(const NcclId& id);
NcclId nccl_id_from_hex(const std::string& hex);

class NcclCommunicator final : public Communicator {
 public:
  // Joins the group of `world` ranks as `rank` on CUDA device `device` (made current). Throws
  // CommError naming the problem (NVLS not disabled, bad rank, NCCL or CUDA failure, timeout).
  NcclCommunicator(const NcclId& id, int rank, int world, int device,
                   std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  void all_reduce_sum(float* data, size_t count, void* stream) override;
  void broadcast(void* data, size_t bytes, int root) override;
  void barrier() override;
  void wait(void* stream) override;
  std::string name() const override { return "nccl"; }
  // How long a wait may take before the communicator is aborted; 0: no limit (a follower waiting
  // for the next step of an idle server; a dead peer still ends the wait through NCCL's error).
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 private:
  struct State;
  // Waits until NCCL's pending call on the communicator completed (non-blocking mode).
  void wait_comm(const char* what);
  // Aborts the communicator and throws CommError("what: why").
  [[noreturn]] void fail(const std::string& what, const std::string& why);
  void ensure_staging(size_t bytes);

  int rank_ = 0, world_ = 0;
  std::chrono::milliseconds timeout_;
  State* state_ = nullptr;  // NCCL and CUDA handles (kept out of this header)
};

}  // namespace ds4
