// Helpers of the expert-parallel GPU tests (cuda_parallel_test, cuda_parallel_dp_test): the demo
// model, random prompts, a host-staged communicator for ranks sharing one GPU, backend options per
// rank, three greedy requests through an Engine, a pool region's bytes and the GPU count.
#pragma once
#include <cuda_runtime.h>

#include <chrono>
#include <functional>
#include <thread>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/model.h"
#include "kernels/cuda/cuda_check.h"
#include "parallel/thread_communicator.h"
#include "scheduler/engine.h"
#include "scheduler/paged_kv_pool.h"
#include "tests/cuda/gpu_test_util.h"

namespace ds4 {
namespace {

inline std::vector<int32_t> random_tokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % 128000);
  t[0] = 0;  // BOS
  return t;
}

// A TEST DOUBLE for device memory on one GPU: synchronises the stream, reduces through the host
// over the thread communicator, copies back. Not capturable in a CUDA graph (graphs off).
class HostStagedCommunicator final : public Communicator {
 public:
  HostStagedCommunicator(ThreadGroup& group, int rank) : inner_(group, rank) {}
  int rank() const override { return inner_.rank(); }
  int world() const override { return inner_.world(); }
  void all_reduce_sum(float* data, size_t count, void* stream) override {
    std::vector<float> host(count);
    DS4_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
    DS4_CUDA_CHECK(cudaMemcpy(host.data(), data, count * sizeof(float), cudaMemcpyDeviceToHost));
    inner_.all_reduce_sum(host.data(), count, nullptr);
    DS4_CUDA_CHECK(cudaMemcpy(data, host.data(), count * sizeof(float), cudaMemcpyHostToDevice));
  }
  void broadcast(void* data, size_t bytes, int root) override { inner_.broadcast(data, bytes, root); }
  void barrier() override { inner_.barrier(); }
  // Device memory (a stream): through host copies (staged); host memory: passed through.
  void all_to_all_v(const void* send, std::span<const size_t> send_bytes, void* recv, std::span<const size_t> recv_bytes,
                    void* stream) override {
    if (!stream) return inner_.all_to_all_v(send, send_bytes, recv, recv_bytes, nullptr);
    size_t out = 0, in = 0;
    for (size_t b : send_bytes) out += b;
    for (size_t b : recv_bytes) in += b;
    staged(stream, send, out, recv, in,
           [&](char* from, char* to) { inner_.all_to_all_v(from, send_bytes, to, recv_bytes, nullptr); });
  }
  void all_gather(const void* send, void* recv, size_t bytes, void* stream) override {
    if (!stream) return inner_.all_gather(send, recv, bytes, nullptr);
    staged(stream, send, bytes, recv, bytes * size_t(world()),
           [&](char* from, char* to) { inner_.all_gather(from, to, bytes, nullptr); });
  }
  void reduce_scatter_sum(const float* send, float* recv, size_t count, void* stream) override {
    if (!stream) return inner_.reduce_scatter_sum(send, recv, count, nullptr);
    staged(stream, send, count * size_t(world()) * sizeof(float), recv, count * sizeof(float), [&](char* from, char* to) {
      inner_.reduce_scatter_sum(reinterpret_cast<const float*>(from), reinterpret_cast<float*>(to), count, nullptr);
    });
  }
  std::string name() const override { return "host-staged threads (test double)"; }

 private:
  // After the stream's work: `out` device bytes of `send` to the host, run(host send, host receive)
  // over the thread double, `in` bytes back to the device at `recv`.
  static void staged(void* stream, const void* send, size_t out, void* recv, size_t in,
                     const std::function<void(char*, char*)>& run) {
    std::vector<char> host_send(out), host_recv(in);
    DS4_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
    if (out) DS4_CUDA_CHECK(cudaMemcpy(host_send.data(), send, out, cudaMemcpyDeviceToHost));
    run(host_send.data(), host_recv.data());
    if (in) DS4_CUDA_CHECK(cudaMemcpy(recv, host_recv.data(), in, cudaMemcpyHostToDevice));
  }

  ThreadCommunicator inner_;
};

inline const Model& demo_model() {
  static std::unique_ptr<Model> model = load_model(test::binary_dir() + "/models/tiny-q2.gguf");
  return *model;
}

// One rank's backend options (no KV quantisation: logits comparable at rounding level); graphs
// only where the communicator can be captured.
inline CudaBackendOptions options(int device, Communicator* comm, int world, bool data_parallel = false) {
  CudaBackendOptions o;
  o.forward.quantize_kv = false;
  o.device = device;
  o.max_seqs = 4;
  o.cuda_graphs = comm == nullptr || comm->name() == "nccl";  // the host-staged double cannot be captured
  if (comm) o.expert_parallel = {comm, expert_shard(comm->rank(), world, demo_model().config.n_expert), data_parallel};
  return o;
}

// Runs rank(r, backend) for `world` ranks on threads, each with its communicator make(r) (owned by
// the thread), its device device(r) and a CudaBackend of options(..., data_parallel); a failure
// of a rank is a test failure naming it.
inline void run_rank_threads(int world, bool data_parallel, const std::function<std::unique_ptr<Communicator>(int)>& make,
                             const std::function<int(int)>& device, const std::function<void(int, CudaBackend&)>& rank) {
  std::vector<std::string> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        CudaBackend::select_device(device(r));
        std::unique_ptr<Communicator> comm = make(r);
        CudaBackend backend(demo_model().config, demo_model().weights, options(device(r), comm.get(), world, data_parallel));
        rank(r, backend);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) EXPECT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
}

// Three greedy requests through an engine, the third after the first two (a prefix-cache hit).
inline std::vector<std::vector<int32_t>> serve(Backend& backend, KvPool& pool) {
  const ModelConfig& c = demo_model().config;
  Engine engine(backend, pool,
                EngineConfig{.scheduler = {.max_num_seqs = 4, .max_num_batched_tokens = 128, .max_prefill_chunk_tokens = 128},
                             .context_length = c.context_length, .eos_token_id = -1, .n_vocab = c.n_vocab});
  engine.start();
  std::vector<GenerationRequest> reqs(3);
  reqs[0].prompt_tokens = random_tokens(300, 11);
  reqs[1].prompt_tokens = random_tokens(20, 12);
  reqs[2].prompt_tokens.assign(reqs[0].prompt_tokens.begin(), reqs[0].prompt_tokens.begin() + 256);
  for (int32_t t : random_tokens(30, 13)) reqs[2].prompt_tokens.push_back(t);
  for (auto& r : reqs) r.sampling.temperature = 0.0f, r.max_tokens = 5, r.ignore_eos = true;
  auto read = [](RequestStream& st) {
    std::vector<int32_t> out;
    StreamChunk ch;
    do {
      if (!st.wait_for(ch, std::chrono::seconds(120))) break;
      out.insert(out.end(), ch.tokens.begin(), ch.tokens.end());
    } while (!ch.finished());
    return out;
  };
  auto s0 = engine.submit(reqs[0]), s1 = engine.submit(reqs[1]);
  std::vector<std::vector<int32_t>> out{read(*s0), read(*s1)};
  auto s2 = engine.submit(reqs[2]);
  out.push_back(read(*s2));
  engine.stop();
  return out;
}

inline std::vector<uint8_t> region_bytes(KvStorage& storage, const KvPoolLayout& layout, int region) {
  std::vector<uint8_t> host(static_cast<size_t>(layout.region_bytes(region)));
  DS4_CUDA_CHECK(cudaDeviceSynchronize());
  DS4_CUDA_CHECK(cudaMemcpy(host.data(), storage.region(region), host.size(), cudaMemcpyDeviceToHost));
  return host;
}

inline int gpu_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

}  // namespace
}  // namespace ds4
