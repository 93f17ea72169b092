// ds4serve's CUDA engine (http/cuda/cuda_engine_factory.h): without a GPU (CI) the factory fails
// with a LoadError that says so; on a GPU, an Engine over make_cuda_engine (scheduler's KV pool in
// device memory, tokens sampled on the device) serves a batch of greedy and seeded sampled
// requests with exactly the tokens of the CPU engine (KV quantisation off, as in
// cuda_backend_test's greedy check), and reports the routed experts and weight bytes it read.
// The sampled requests keep top-k 40: the random model's distribution is nearly flat over 129K
// tokens, so without a top-k the GPU's ~1e-6 logit differences move a draw across a token
// boundary within a few dozen draws (seen on the H200: request 5, draw 22, top-p 0.9 alone).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "engine/cpu_backend.h"
#include "engine/load_error.h"
#include "engine/model.h"
#include "gpu_test_util.h"
#include "http/cuda/cuda_engine_factory.h"
#include "scheduler/engine.h"
#include "scheduler/paged_kv_pool.h"

namespace ds4 {
namespace {

using namespace std::chrono_literals;

TEST(CudaServe, NoDeviceIsAClearError) {
  std::string why;
  if (test::gpu_available(&why)) GTEST_SKIP() << "a GPU is present: this checks the CI case";
  const ModelConfig config = preset_by_name("tiny");
  http::DeviceEngineRequest r;
  r.config = &config;
  try {
    http::make_cuda_engine(r);
    FAIL() << "make_cuda_engine succeeded without a GPU";
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
  }
}

struct Served {
  std::vector<std::vector<int32_t>> tokens;
  int64_t unique_experts = 0, weight_bytes = 0, steps = 0;
};

std::vector<GenerationRequest> requests(int32_t n_vocab) {
  std::vector<GenerationRequest> out;
  for (int i = 0; i < 10; ++i) {
    GenerationRequest r;
    const int len = 5 + i * 67;  // up to 608 tokens: chunked prefill, compressed windows closed
    for (int t = 0; t < len; ++t) r.prompt_tokens.push_back((1000 + 7919 * (t + 131 * i)) % n_vocab);
    r.max_tokens = 24;
    r.ignore_eos = true;
    r.sampling.temperature = i % 2 ? 0.8f : 0.0f;
    r.sampling.top_p = i % 4 == 1 ? 0.9f : 1.0f;
    r.sampling.top_k = 40;
    r.sampling.seed = 100 + i;
    out.push_back(r);
  }
  return out;
}

// Submits every request before the loop starts (so both engines plan the same steps), reads them all.
Served serve(Backend& backend, KvPool& pool, const ModelConfig& c) {
  EngineConfig ec;
  ec.scheduler.max_num_seqs = 8;
  ec.scheduler.max_num_batched_tokens = 256;
  ec.context_length = c.context_length;
  ec.n_vocab = c.n_vocab;
  Engine engine(backend, pool, ec);
  Served s;
  engine.set_step_observer([&s](const StepStats& st) {
    s.unique_experts += st.unique_experts, s.weight_bytes += st.weight_bytes_read, s.steps += 1;
  });
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const GenerationRequest& r : requests(c.n_vocab)) streams.push_back(engine.submit(r));
  engine.start();
  for (auto& stream : streams) {
    std::vector<int32_t> tokens;
    StreamChunk chunk;
    while (stream->wait_for(chunk, 60s)) {
      tokens.insert(tokens.end(), chunk.tokens.begin(), chunk.tokens.end());
      if (chunk.finished()) break;
    }
    EXPECT_TRUE(chunk.finished() && chunk.error.empty()) << chunk.error;
    s.tokens.push_back(tokens);
  }
  engine.stop();
  return s;
}

TEST(CudaServe, EngineOnTheDeviceMatchesTheCpuEngine) {
  DS4_REQUIRE_GPU();
  const auto m = load_model(test::binary_dir() + "/models/tiny-q2.gguf");
  const ModelConfig& c = m->config;
  const ForwardOptions exact{.quantize_kv = false};
  CpuBackend cpu(c, m->weights, exact);
  auto host_pool = make_host_paged_pool(c, int64_t(1) << 30, 8);
  const Served want = serve(cpu, *host_pool, c);

  http::DeviceEngineRequest r;
  r.config = &c;
  r.weights = &m->weights;
  r.forward = exact;
  r.max_num_seqs = 8;
  r.kv_memory_gib = 1;
  r.reserve_gib = 0;
  http::DeviceEngine gpu = http::make_cuda_engine(r);
  std::printf("[ gpu ] %s\n", gpu.description.c_str());
  ASSERT_TRUE(gpu.backend->supports_device_sampling());
  const Served got = serve(*gpu.backend, *gpu.pool, c);

  ASSERT_EQ(got.tokens.size(), want.tokens.size());
  for (size_t i = 0; i < want.tokens.size(); ++i) {
    EXPECT_EQ(want.tokens[i].size(), 24u);
    EXPECT_EQ(got.tokens[i], want.tokens[i]) << "request " << i << (i % 2 ? " (sampled)" : " (greedy)");
  }
  EXPECT_EQ(got.steps, want.steps);
  EXPECT_GT(got.unique_experts, 0);
  // Same steps and the same routing up to near-ties: the same expert union, the same bytes.
  EXPECT_NEAR(double(got.unique_experts) / double(want.unique_experts), 1.0, 0.01);
  EXPECT_NEAR(double(got.weight_bytes) / double(want.weight_bytes), 1.0, 0.01);
  std::printf("[ gpu ] engine on the device: %zu requests, %lld steps, tokens identical to the CPU engine; experts read "
              "%lld (CPU %lld), weight bytes %.3f GB (CPU %.3f GB)\n",
              got.tokens.size(), (long long)got.steps, (long long)got.unique_experts, (long long)want.unique_experts,
              got.weight_bytes / 1e9, want.weight_bytes / 1e9);
}

}  // namespace
}  // namespace ds4
