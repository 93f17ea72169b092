// GPU sampler (kernels/cuda/sample.h) against engine/sampler.cpp: the same token for the same
// logits, parameters, seed and step over a sweep of vocabulary sizes (1 to the real 129280),
// logit spreads (including ties and weights that underflow to zero) and every filter
// combination, several rows per call; and CudaBackend::sample on the demo model's logits.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "kernels/cuda/sample.h"
#include "tests/cuda/gpu_test_util.h"

namespace ds4 {
namespace {

std::vector<cuda::SampleRow> param_sweep(uint64_t seed_base) {
  std::vector<cuda::SampleRow> rows;
  const float temps[] = {0.0f, 0.3f, 1.0f, 2.5f};
  const float top_ps[] = {1.0f, 0.9f, 0.3f, 1e-6f};
  const float min_ps[] = {0.0f, 0.05f, 1.0f};
  const int top_ks[] = {0, 1, 40, 1000000};
  uint64_t step = 0;
  for (float t : temps)
    for (float tp : top_ps)
      for (float mp : min_ps)
        for (int k : top_ks) rows.push_back({t, tp, mp, k, seed_base + step, step * 7 + 3}), ++step;
  return rows;
}

// Logits of one row: kind 0 gaussian, 1 gaussian rounded to 0.25 (many ties), 2 wide spread
// (most weights underflow to zero), 3 all equal.
std::vector<float> logits_row(int64_t vocab, int kind, std::mt19937& rng) {
  std::normal_distribution<float> n(0.0f, kind == 2 ? 300.0f : 3.0f);
  std::vector<float> v(vocab);
  for (float& x : v) {
    x = n(rng);
    if (kind == 1) x = std::round(x * 4.0f) / 4.0f;
    if (kind == 3) x = 1.5f;
  }
  return v;
}

TEST(CudaSample, SameTokensAsTheCpuSampler) {
  DS4_REQUIRE_GPU();
  std::mt19937 rng(5);
  int compared = 0, mismatches = 0;
  for (int64_t vocab : {int64_t(1), int64_t(7), int64_t(1000), int64_t(129280)}) {
    for (int kind = 0; kind < 4; ++kind) {
      const std::vector<cuda::SampleRow> rows = param_sweep(1000 * vocab + kind);
      const int64_t R = static_cast<int64_t>(rows.size());
      std::vector<float> logits;
      for (int64_t r = 0; r < R; ++r) {
        const auto row = logits_row(vocab, kind, rng);
        logits.insert(logits.end(), row.begin(), row.end());
      }
      test::DeviceArray<float> logits_dev(logits);
      test::DeviceArray<int32_t> tokens(R);
      const size_t ws_bytes = cuda::sample_workspace_bytes(R, vocab);
      test::DeviceArray<uint8_t> ws(ws_bytes);
      cuda::SampleParams p;
      p.logits = logits_dev.get(), p.logits_stride = vocab, p.n_rows = R, p.n_vocab = vocab;
      p.rows = rows.data(), p.tokens = tokens.get(), p.workspace = ws.get(), p.workspace_bytes = ws_bytes;
      cuda::sample(p, nullptr);
      const std::vector<int32_t> got = tokens.to_host();
      for (int64_t r = 0; r < R; ++r) {
        const cuda::SampleRow& s = rows[r];
        const SamplingParams sp{s.temperature, s.top_p, s.min_p, s.top_k, s.seed};
        const int32_t want = sample_token(std::span<const float>(logits).subspan(r * vocab, vocab), sp, s.step);
        ++compared;
        if (got[r] != want) {
          ++mismatches;
          ADD_FAILURE() << "vocab " << vocab << " kind " << kind << " row " << r << " (T " << s.temperature << " top_p "
                        << s.top_p << " min_p " << s.min_p << " top_k " << s.top_k << "): GPU " << got[r] << ", CPU " << want;
        }
      }
    }
  }
  std::printf("[ gpu ] sampler: %d draws compared with the CPU sampler, %d different\n", compared, mismatches);
}

TEST(CudaSample, BackendSamplesItsLastLogits) {
  DS4_REQUIRE_GPU();
  const auto model = load_model(test::binary_dir() + "/models/tiny-q2.gguf");
  CudaBackend gpu(model->config, model->weights);
  std::vector<std::unique_ptr<CudaSequenceKv>> kv;
  std::vector<std::vector<int32_t>> prompts = {{0, 5, 900, 17}, {0, 44}, {0, 7, 7, 7, 7, 7, 7}};
  ForwardBatch b;
  for (auto& pr : prompts) {
    kv.push_back(gpu.new_sequence());
    b.sequences.push_back({kv.back().get(), pr, false});
  }
  const ForwardOutput out = gpu.forward(b);
  std::vector<cuda::SampleRow> rows = {{0.0f, 1.0f, 0.0f, 0, 1, 0}, {0.8f, 0.95f, 0.02f, 50, 2, 9}, {1.3f, 1.0f, 0.0f, 0, 3, 4}};
  const std::vector<int32_t> got = gpu.sample(rows);
  for (size_t s = 0; s < rows.size(); ++s) {
    const SamplingParams sp{rows[s].temperature, rows[s].top_p, rows[s].min_p, rows[s].top_k, rows[s].seed};
    EXPECT_EQ(got[s], sample_token(std::span<const float>(out.row(s), out.n_vocab), sp, rows[s].step)) << "sequence " << s;
  }
}

}  // namespace
}  // namespace ds4
