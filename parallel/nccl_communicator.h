// NcclCommunicator: Communicator over NCCL (docs/PARALLEL.md section 4), one per rank and GPU.
// libnccl.so.2 is loaded at run time (dlopen; on the GPU machines from the nvidia-nccl-cu13 wheel
// through LD_LIBRARY_PATH), so binaries start without it. Every wait polls the stream and
// ncclCommGetAsyncError with a deadline: a peer that died or hangs turns into ncclCommAbort and a
// CommError naming the cause, never a hang. all_reduce_sum, all_gather, reduce_scatter_sum and
// all_to_all_v (grouped ncclSend / ncclRecv) enqueue on the caller's stream (device memory); broadcast and barrier run on an own stream through a device
// staging buffer and return when done. Needs NCCL_NVLS_ENABLE=0 in the environment (checked: NVLink
// multicast needs cuMulticastCreate, which the machines here refuse). CUDA builds only.
#pragma once
#include <array>
#include <chrono>
#include <functional>
#include <string>

#include "parallel/communicator.h"

namespace ds4 {

// The 128 bytes rank 0 creates and every rank needs to join (ncclUniqueId), sent by the launcher.
using NcclId = std::array<char, 128>;
// A new id (rank 0 only). Throws CommError (also when libnccl.so.2 cannot be loaded).
NcclId nccl_new_id();
// Hex text of an id (to pass through an environment variable or a socket) and back; from_hex
// throws CommError on malformed text.
std::string nccl_id_to_hex(const NcclId& id);
NcclId nccl_id_from_hex(const std::string& hex);

class NcclCommunicator final : public Communicator {
 public:
  // Joins the group of `world` ranks as `rank` on CUDA device `device` (made current); blocks until
  // every rank has joined. Throws CommError naming the problem (NVLS not disabled, bad rank, no
  // libnccl.so.2, NCCL or CUDA failure).
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
  // Grouped ncclSend / ncclRecv per peer; with a null stream the host bytes go through the staging
  // buffer on the communicator's own stream and the call returns when done.
  void all_to_all_v(const void* send, std::span<const size_t> send_bytes, void* recv,
                    std::span<const size_t> recv_bytes, void* stream) override;
  // ncclAllGather / ncclReduceScatter on the caller's stream; with a null stream host memory
  // through the staging buffer (returns when done).
  void all_gather(const void* send, void* recv, size_t bytes, void* stream) override;
  void reduce_scatter_sum(const float* send, float* recv, size_t count, void* stream) override;
  void wait(void* stream) override;
  std::string name() const override { return "nccl"; }
  // How long a wait may take before the communicator is aborted; 0: no limit (a follower waiting
  // for the next step of an idle server; a dead peer still ends the wait through NCCL's error).
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 private:
  struct State;
  // Fails (abort + CommError) when NCCL reports an asynchronous error on the communicator.
  void check_async(const char* what);
  void release();  // frees the NCCL and CUDA handles
  // Aborts the communicator and throws CommError("what: why").
  [[noreturn]] void fail(const std::string& what, const std::string& why);
  void ensure_staging(size_t bytes);
  void staged(const void* send, size_t out, void* recv, size_t in, const std::function<void(char*, char*)>& run);
  void send_recv_group(const char* send, std::span<const size_t> send_bytes, char* recv,
                       std::span<const size_t> recv_bytes, void* stream);

  int rank_ = 0, world_ = 0;
  std::chrono::milliseconds timeout_;
  State* state_ = nullptr;  // NCCL and CUDA handles (kept out of this header)
};

}  // namespace ds4
