// NCCL implementation of Communicator (see nccl_communicator.h). libnccl.so.2 is loaded at run
// time (dlopen) on first use, so no binary needs the 218 MB library to start and a machine without
// it gets a clear error only when several GPUs are asked for. Every NCCL and CUDA call is checked;
// waits poll the stream and NCCL's asynchronous error with a deadline, so a failed peer becomes a
// CommError (after ncclCommAbort), not a hang. The communicator is a blocking one (ncclCommInitRank).
#include "parallel/nccl_communicator.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
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

// The NCCL entry points this file uses, resolved from libnccl.so.2 once.
struct NcclApi {
  ncclResult_t (*get_unique_id)(ncclUniqueId*);
  ncclResult_t (*comm_init_rank)(ncclComm_t*, int, ncclUniqueId, int);
  ncclResult_t (*comm_destroy)(ncclComm_t);
  ncclResult_t (*comm_abort)(ncclComm_t);
  ncclResult_t (*comm_get_async_error)(ncclComm_t, ncclResult_t*);
  ncclResult_t (*all_reduce)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*broadcast)(const void*, void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*all_gather)(const void*, void*, size_t, ncclDataType_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*reduce_scatter)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*send)(const void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*recv)(void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t);
  ncclResult_t (*group_start)();
  ncclResult_t (*group_end)();
  const char* (*get_error_string)(ncclResult_t);
};

template <typename Fn>
void resolve(void* lib, const char* name, Fn& fn) {
  fn = reinterpret_cast<Fn>(dlsym(lib, name));
  if (!fn) throw CommError(std::string("libnccl.so.2 has no ") + name);
}

NcclApi load_nccl() {
  void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
  if (!lib)
    throw CommError(std::string("cannot load libnccl.so.2 (") + dlerror() +
                    "); on the GPU machines put the lib folder of the nvidia-nccl-cu13 wheel on LD_LIBRARY_PATH");
  NcclApi api{};
  resolve(lib, "ncclGetUniqueId", api.get_unique_id);
  resolve(lib, "ncclCommInitRank", api.comm_init_rank);
  resolve(lib, "ncclCommDestroy", api.comm_destroy);
  resolve(lib, "ncclCommAbort", api.comm_abort);
  resolve(lib, "ncclCommGetAsyncError", api.comm_get_async_error);
  resolve(lib, "ncclAllReduce", api.all_reduce);
  resolve(lib, "ncclBroadcast", api.broadcast);
  resolve(lib, "ncclAllGather", api.all_gather);
  resolve(lib, "ncclReduceScatter", api.reduce_scatter);
  resolve(lib, "ncclSend", api.send);
  resolve(lib, "ncclRecv", api.recv);
  resolve(lib, "ncclGroupStart", api.group_start);
  resolve(lib, "ncclGroupEnd", api.group_end);
  resolve(lib, "ncclGetErrorString", api.get_error_string);
  return api;  // the library stays loaded for the process
}

const NcclApi& nccl() {
  static const NcclApi api = load_nccl();  // thread-safe; a failed load throws again next time
  return api;
}

std::string nccl_text(ncclResult_t r) { return std::string(nccl().get_error_string(r)) + " (" + std::to_string(int(r)) + ")"; }

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CommError(std::string(what) + ": " + cudaGetErrorString(e));
}

}  // namespace

NcclId nccl_new_id() {
  ncclUniqueId id;
  if (const ncclResult_t r = nccl().get_unique_id(&id); r != ncclSuccess) throw CommError("ncclGetUniqueId: " + nccl_text(r));
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
    : rank_(rank), world_(world), timeout_(timeout) {
  const char* nvls = std::getenv("NCCL_NVLS_ENABLE");
  if (!nvls || std::string(nvls) != "0")
    throw CommError("NCCL_NVLS_ENABLE=0 must be set in every rank's environment (NVLink multicast stays off)");
  if (world < 1 || rank < 0 || rank >= world)
    throw CommError("rank " + std::to_string(rank) + " is not in a world of " + std::to_string(world));
  const NcclApi& api = nccl();  // a clear error before touching the device when the library is missing
  state_ = new State;
  try {
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    check_cuda(cudaStreamCreateWithFlags(&state_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    check_cuda(cudaMalloc(reinterpret_cast<void**>(&state_->one), sizeof(float)), "cudaMalloc");
    ncclUniqueId uid;
    std::memcpy(uid.internal, id.data(), id.size());
    // Blocks until every rank has joined (a rank that never comes is the launcher's to stop).
    if (const ncclResult_t r = api.comm_init_rank(&state_->comm, world, uid, rank); r != ncclSuccess)
      fail("ncclCommInitRank", nccl_text(r));
  } catch (...) {
    release();  // the destructor does not run for a constructor that throws
    state_ = nullptr;
    throw;
  }
}

void NcclCommunicator::release() {
  if (state_->comm && !state_->aborted) nccl().comm_destroy(state_->comm);  // an aborted one is already freed
  if (state_->staging) cudaFree(state_->staging);
  if (state_->one) cudaFree(state_->one);
  if (state_->stream) cudaStreamDestroy(state_->stream);
  delete state_;
}

NcclCommunicator::~NcclCommunicator() {
  if (state_) release();
}

void NcclCommunicator::fail(const std::string& what, const std::string& why) {
  if (state_->comm && !state_->aborted) {
    nccl().comm_abort(state_->comm);  // releases peers' pending operations with an error
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

void NcclCommunicator::check_async(const char* what) {
  ncclResult_t state = ncclSuccess;
  if (const ncclResult_t r = nccl().comm_get_async_error(state_->comm, &state); r != ncclSuccess) fail(what, nccl_text(r));
  if (state != ncclSuccess && state != ncclInProgress) fail(what, nccl_text(state));
}

void NcclCommunicator::wait(void* stream) {
  if (state_->aborted) throw CommError("communicator was aborted after an earlier failure");
  const auto s = static_cast<cudaStream_t>(stream);
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const cudaError_t e = cudaStreamQuery(s);
    if (e == cudaSuccess) return;
    if (e != cudaErrorNotReady) fail("stream wait", cudaGetErrorString(e));
    check_async("stream wait");
    if (past(start, timeout_)) fail("stream wait", "timed out (a rank is gone or stuck)");
    pause_since(start);
  }
}

void NcclCommunicator::all_reduce_sum(float* data, size_t count, void* stream) {
  if (state_->aborted) throw CommError("communicator was aborted after an earlier failure");
  const ncclResult_t r =
      nccl().all_reduce(data, data, count, ncclFloat32, ncclSum, state_->comm, static_cast<cudaStream_t>(stream));
  if (r != ncclSuccess) fail("ncclAllReduce", nccl_text(r));  // enqueued; wait() sees it finish
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
  const ncclResult_t r = nccl().broadcast(state_->staging, state_->staging, bytes, ncclUint8, root, state_->comm, state_->stream);
  if (r != ncclSuccess) fail("ncclBroadcast", nccl_text(r));
  if (rank_ != root)
    check_cuda(cudaMemcpyAsync(data, state_->staging, bytes, cudaMemcpyDeviceToHost, state_->stream), "cudaMemcpyAsync");
  wait(state_->stream);
}

namespace {

size_t total_bytes(std::span<const size_t> sizes) {
  size_t total = 0;
  for (size_t b : sizes) total += b;
  return total;
}

}  // namespace

// One NCCL group of a send and a receive per peer with a non-empty segment (the own segment too:
// NCCL pairs a rank's send to itself with its receive from itself).
void NcclCommunicator::send_recv_group(const char* send, std::span<const size_t> send_bytes, char* recv,
                                       std::span<const size_t> recv_bytes, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  const NcclApi& api = nccl();
  if (const ncclResult_t r = api.group_start(); r != ncclSuccess) fail("ncclGroupStart", nccl_text(r));
  size_t send_at = 0, recv_at = 0;
  ncclResult_t first_error = ncclSuccess;
  for (int p = 0; p < world_; ++p) {
    if (send_bytes[p] && first_error == ncclSuccess)
      first_error = api.send(send + send_at, send_bytes[p], ncclUint8, p, state_->comm, s);
    if (recv_bytes[p] && first_error == ncclSuccess)
      first_error = api.recv(recv + recv_at, recv_bytes[p], ncclUint8, p, state_->comm, s);
    send_at += send_bytes[p];
    recv_at += recv_bytes[p];
  }
  const ncclResult_t end = api.group_end();  // always closes the group
  if (first_error != ncclSuccess) fail("ncclSend/ncclRecv", nccl_text(first_error));
  if (end != ncclSuccess) fail("ncclGroupEnd", nccl_text(end));
}

void NcclCommunicator::all_to_all_v(const void* send, std::span<const size_t> send_bytes, void* recv,
                                    std::span<const size_t> recv_bytes, void* stream) {
  if (state_->aborted) throw CommError("communicator was aborted after an earlier failure");
  if (send_bytes.size() != size_t(world_) || recv_bytes.size() != size_t(world_))
    throw CommError("all_to_all_v: one size per rank expected");
  if (stream) {  // device memory, enqueued on the caller's stream
    send_recv_group(static_cast<const char*>(send), send_bytes, static_cast<char*>(recv), recv_bytes, stream);
    return;
  }
  staged(send, total_bytes(send_bytes), recv, total_bytes(recv_bytes), [&](char* from, char* to) {
    send_recv_group(from, send_bytes, to, recv_bytes, state_->stream);
  });
}

// Host memory through the staging buffer: `out` bytes of `send` copied in (send part first, the
// receive part after it, float-aligned), run(device send, device receive) enqueued on the own
// stream, `in` bytes copied back to `recv`; returns when done.
void NcclCommunicator::staged(const void* send, size_t out, void* recv, size_t in,
                              const std::function<void(char*, char*)>& run) {
  const size_t recv_at = (out + sizeof(float) - 1) / sizeof(float) * sizeof(float);
  ensure_staging(recv_at + in + 1);
  char* staging = static_cast<char*>(state_->staging);
  if (out) check_cuda(cudaMemcpyAsync(staging, send, out, cudaMemcpyHostToDevice, state_->stream), "cudaMemcpyAsync");
  run(staging, staging + recv_at);
  if (in) check_cuda(cudaMemcpyAsync(recv, staging + recv_at, in, cudaMemcpyDeviceToHost, state_->stream), "cudaMemcpyAsync");
  wait(state_->stream);
}

// Device memory on the caller's stream; host memory (null stream) through staged().
void NcclCommunicator::all_gather(const void* send, void* recv, size_t bytes, void* stream) {
  if (state_->aborted) throw CommError("communicator was aborted after an earlier failure");
  const auto gather = [&](const void* from, void* to, cudaStream_t s) {
    const ncclResult_t r = nccl().all_gather(from, to, bytes, ncclUint8, state_->comm, s);
    if (r != ncclSuccess) fail("ncclAllGather", nccl_text(r));
  };
  if (stream) return gather(send, recv, static_cast<cudaStream_t>(stream));
  staged(send, bytes, recv, bytes * size_t(world_), [&](char* from, char* to) { gather(from, to, state_->stream); });
}

void NcclCommunicator::reduce_scatter_sum(const float* send, float* recv, size_t count, void* stream) {
  if (state_->aborted) throw CommError("communicator was aborted after an earlier failure");
  const auto reduce = [&](const void* from, void* to, cudaStream_t s) {
    const ncclResult_t r = nccl().reduce_scatter(from, to, count, ncclFloat32, ncclSum, state_->comm, s);
    if (r != ncclSuccess) fail("ncclReduceScatter", nccl_text(r));
  };
  if (stream) return reduce(send, recv, static_cast<cudaStream_t>(stream));
  staged(send, count * size_t(world_) * sizeof(float), recv, count * sizeof(float),
         [&](char* from, char* to) { reduce(from, to, state_->stream); });
}

void NcclCommunicator::barrier() {
  all_reduce_sum(state_->one, 1, state_->stream);
  wait(state_->stream);
}

}  // namespace ds4
