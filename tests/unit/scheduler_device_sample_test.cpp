// The engine's device-sampling path (Backend::sample_rows, ForwardBatch::host_logits) with a fake
// device backend: it hides its logits from the host when asked and draws on "the device" with
// the CPU sampler, so every request must get exactly the tokens of the host-sampling engine;
// requests that want logprobs keep the host path; rows of unsampled prefill chunks are drawn too.
#include <gtest/gtest.h>

#include <thread>

#include "engine/sampler.h"
#include "scheduler/engine.h"
#include "scheduler_fakes.h"

namespace ds4::test {
namespace {

using namespace std::chrono_literals;

class FakeDeviceBackend final : public Backend {
 public:
  ForwardOutput forward(const ForwardBatch& batch) override {
    ForwardOutput out = inner_.forward(batch);
    device_logits_ = out.logits;
    if (!batch.host_logits) {
      out.logits.clear();  // the engine must not read them
      ++device_steps;
    } else {
      ++host_steps;
    }
    return out;
  }
  bool supports_device_sampling() const override { return true; }
  std::vector<int32_t> sample_rows(std::span<const RowSampling> rows) override {
    const size_t n_vocab = static_cast<size_t>(inner_.n_vocab());
    if (rows.size() * n_vocab != device_logits_.size()) ADD_FAILURE() << "rows do not match the last forward";
    std::vector<int32_t> tokens;
    for (size_t i = 0; i < rows.size() && (i + 1) * n_vocab <= device_logits_.size(); ++i)
      tokens.push_back(sample_token(std::span<const float>(device_logits_).subspan(i * n_vocab, n_vocab), rows[i].params,
                                    rows[i].step));
    rows_drawn += rows.size();
    return tokens;
  }
  int device_steps = 0, host_steps = 0;
  size_t rows_drawn = 0;

 private:
  FakeBackend inner_;
  std::vector<float> device_logits_;
};

std::vector<int32_t> run(Engine& engine, const GenerationRequest& r) {
  auto stream = engine.submit(r);
  std::vector<int32_t> tokens;
  StreamChunk chunk;
  while (true) {
    if (!stream->wait_for(chunk, 5s)) {
      ADD_FAILURE() << "stream " << stream->id() << " timed out";
      break;
    }
    tokens.insert(tokens.end(), chunk.tokens.begin(), chunk.tokens.end());
    if (chunk.finished()) break;
  }
  return tokens;
}

std::vector<GenerationRequest> requests() {
  std::vector<GenerationRequest> out;
  for (int i = 0; i < 12; ++i) {
    const auto seq = make_sequence(0, {.prompt_len = 3 + i * 11, .max_tokens = 5 + i % 4,
                                       .temperature = i % 3 ? 0.8f : 0.0f, .seed = uint64_t(40 + i), .first_token = i}, 64);
    GenerationRequest r = seq->request;
    r.prompt_tokens = seq->tokens;
    r.sampling.top_k = i % 4 == 1 ? 5 : 0;
    r.sampling.top_p = i % 4 == 2 ? 0.8f : 1.0f;
    r.logprobs = i == 7;  // one request on the host path
    out.push_back(r);
  }
  return out;
}

// Submits every request from its own thread (so steps batch them) and returns their tokens.
std::vector<std::vector<int32_t>> serve(Backend& backend) {
  FakePool pool(200, 8);
  Engine engine(backend, pool,
                EngineConfig{.scheduler = {.max_num_seqs = 6, .max_num_batched_tokens = 40, .max_prefill_chunk_tokens = 16},
                             .context_length = 100000, .eos_token_id = -1, .n_vocab = 64});
  engine.start();
  const auto reqs = requests();
  std::vector<std::vector<int32_t>> tokens(reqs.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < reqs.size(); ++i) clients.emplace_back([&, i] { tokens[i] = run(engine, reqs[i]); });
  for (auto& c : clients) c.join();
  engine.stop();
  return tokens;
}

TEST(EngineDeviceSampling, SameTokensAsHostSampling) {
  FakeBackend host;
  FakeDeviceBackend device;
  const auto want = serve(host);
  const auto got = serve(device);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_FALSE(want[i].empty());
    EXPECT_EQ(got[i], want[i]) << "request " << i;
  }
  EXPECT_GT(device.device_steps, 0) << "the device path was never taken";
  EXPECT_GT(device.host_steps, 0) << "the logprobs request must keep the host path";
  EXPECT_GT(device.rows_drawn, 0u);
}

}  // namespace
}  // namespace ds4::test
