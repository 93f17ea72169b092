// NCCL implementation of Communicator (see nccl_communicator.h). Every NCCL and CUDA call is
// checked; waits poll with a deadline so a failed peer becomes a CommError, not a hang.
#include "parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace ds4 {

struct NcclCommunicator::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;  // broadcast / barrier
  void* staging = nullptr;        // device bytes for broadcast
  size_t staging_bytes = 0;
  float* one = nullptr;           // device float for barrier
  bool aborted = false;
};

namespace {

std::string nccl_text(ncclResult_t r) { return std::string(ncclGetErrorString(r)) + " (" + std::to_string(int(r)) + ")"; }

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CommError(std::string(what) + ": " + cudaGetErrorString(e));
}

}  // namespace

NcclId nccl_new_id() {
  ncclUniqueId id;
  if (const ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) throw CommError("ncclGetUniqueId: " + nccl_text(r));
  NcclId out{};
  static_assert(sizeof(id.internal) == out.size());
  std::memcpy(out.data(), id.internal, out.size());
  return out;
}

std::string nccl_id_to_hex(const NcclId& id) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (char c : id) s += kHex[(static_cast<unsigned char>(c) >> 4) & 15], s += kHex[static_cast<unsigned char>(c) & 15];
  return s;
}

NcclId nccl_id_from_hex(const std::string& hex) {
  NcclId id{};
  if (hex.size() != 2 * id.size()) throw CommError("NCCL id: expected 256 hex digits, got " + std::to_string(hex.size()));
  const auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw CommError(std::string("NCCL id: '") + c + "' is not a lower-case hex digit");
  };
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<char>(digit(hex[2 * i]) * 16 + digit(hex[2 * i + 1]));
  return id;
}

NcclCommunicator::NcclCommunicator(const NcclId& id, int rank, int world, int device, std::chrono::milliseconds timeout)
    : rank_(rank), world_(world), timeout_(timeout), state_(new State) {
  const char* nvls = std::getenv("NCCL_NVLS_ENABLE");
  if (!nvls || std::string(nvls) != "0")
    throw CommError("NCCL_NVLS_ENABLE=0 must be set in every rank's environment (NVLink multicast stays off)");
  if (world < 1 || rank < 0 || rank >= world)
    throw CommError("rank " + std::to_string(rank) + " is not in a world of " + std::to_string(world));
  check_cuda(cudaSetDevice(device), "cudaSetDevice");
  check_cuda(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check_cuda(cudaMalloc(reinterpret_cast<void**>(&state_->one), sizeof(float)), "cudaMalloc");
  ncclUniqueId uid;
  std::memcpy(uid.internal, id.data(), id.size());
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const ncclResult_t r = ncclCommInitRankConfig(&state_->comm, world, uid, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) fail("ncclCommInitRankConfig", nccl_text(r));
  wait_comm("ncclCommInitRankConfig");
}

NcclCommunicator::~NcclCommunicator() {
  if (state_->comm && !state_->aborted) ncclCommDestroy(state_->comm);  // an aborted one is already freed
  if (state_->staging) cudaFree(state_->staging);
  if (state_->one) cudaFree(state_->one);
  if (state_->stream) cudaStreamDestroy(state_->stream);
  delete state_;
}

void NcclCommunicator::fail(const std::string& what, const std::string& why) {
  if (state_->comm && !state_->aborted) {
    ncclCommAbort(state_->comm);  // releases peers' pending operations with an error
    state_->aborted = true;
  }
  throw CommError("rank " + std::to_string(rank_) + " of " + std::to_string(world_) + ": " + what + ": " + why);
}

namespace {

bool past(std::chrono::steady_clock::time_point start, std::chrono::milliseconds limit) {
  return limit.count() > 0 && std::chrono::steady_clock::now() - start > limit;
}

// Spins for the first 2 ms (a step's collectives), then sleeps between polls (an idle wait).
void pause_since(std::chrono::steady_clock::time_point start) {
  if (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(2))
    std::this_thread::yield();
  else
    std::this_thread::sleep_for(std::chrono::microseconds(200));
}

}  // namespace

void NcclCommunicator::wait_comm(const char* what) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    ncclResult_t state = ncclSuccess;
    if (const ncclResult_t r = ncclCommGetAsyncError(state_->comm, &state); r != ncclSuccess) fail(what, nccl_text(r));
    if (state == ncclSuccess) return;
    if (state != ncclInProgress) fail(what, nccl_text(state));
    if (past(start, timeout_)) fail(what, "timed out (a rank is gone or stuck)");
    pause_since(start);
  }
}

void NcclCommunicator::wait(void* stream) {
  if (state_->aborted) throw CommError("communicator was aborted after an earlier failure");
  const auto s = static_cast<cudaStream_t>(stream);
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) fail("stream wait", cudaGetErrorString(e));
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(state_->comm, &state);
    if (state != ncclSuccess && state != ncclInProgress) fail("stream wait", nccl_text(state));
    if (past(start, timeout_)) fail("stream wait", "timed out (a rank is gone or stuck)");
    pause_since(start);
  }
}

void NcclCommunicator::all_reduce_sum(float* data, size_t count, void* stream) {
  if (state_->aborted) throw CommError("communicator was aborted after an earlier failure");
  const ncclResult_t r = ncclAllReduce(data, data, count, ncclFloat32, ncclSum, state_->comm, static_cast<cudaStream_t>(stream));
  if (r != ncclSuccess && r != ncclInProgress) fail("ncclAllReduce", nccl_text(r));
  wait_comm("ncclAllReduce");  // enqueued (non-blocking mode may return before)
}

void NcclCommunicator::ensure_staging(size_t bytes) {
  if (bytes <= state_->staging_bytes) return;
  if (state_->staging) check_cuda(cudaFree(state_->staging), "cudaFree");
  state_->staging = nullptr;
  const size_t size = std::max(bytes, 2 * state_->staging_bytes);
  check_cuda(cudaMalloc(&state_->staging, size), "cudaMalloc (broadcast staging)");
  state_->staging_bytes = size;
}

void NcclCommunicator::broadcast(void* data, size_t bytes, int root) {
  if (state_->aborted) throw CommError("communicator was aborted after an earlier failure");
  if (root < 0 || root >= world_) throw CommError("broadcast: root rank out of range");
  if (bytes == 0) return;
  ensure_staging(bytes);
  if (rank_ == root)
    check_cuda(cudaMemcpyAsync(state_->staging, data, bytes, cudaMemcpyHostToDevice, state_->stream), "cudaMemcpyAsync");
  const ncclResult_t r = ncclBroadcast(state_->staging, state_->staging, bytes, ncclUint8, root, state_->comm, state_->stream);
  if (r != ncclSuccess && r != ncclInProgress) fail("ncclBroadcast", nccl_text(r));
  wait_comm("ncclBroadcast");
  if (rank_ != root)
    check_cuda(cudaMemcpyAsync(data, state_->staging, bytes, cudaMemcpyDeviceToHost, state_->stream), "cudaMemcpyAsync");
  wait(state_->stream);
}

void NcclCommunicator::barrier() {
  all_reduce_sum(state_->one, 1, state_->stream);
  wait(state_->stream);
}

}  // namespace ds4
