// Direct synthetic quantised blocks (kernels/synth_blocks.h) and their use by the model writer
// (engine/synth.cpp): value statistics per format, determinism and seed sensitivity, the written
// demo model's expert bytes, and float tensors still quantised from synth_tensor_rows.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/model_layout.h"
#include "engine/synth.h"
#include "kernels/f16.h"
#include "kernels/quant.h"
#include "kernels/synth_blocks.h"

namespace ds4 {
namespace {

std::vector<uint8_t> direct_rows(GgmlType type, double target_std, uint64_t n, uint64_t rows, uint64_t seed) {
  const uint64_t bb = ggml_type_info(type).block_bytes, blocks = n / kQK_K;
  std::vector<uint8_t> out(rows * blocks * bb);
  const SynthBlockScales s = synth_block_scales(type, target_std);
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t b = 0; b < blocks; ++b)
      synth_block(type, s, synth_block_seed(synth_row_seed(seed, r), b), out.data() + (r * blocks + b) * bb);
  return out;
}

TEST(SynthBlocks, ValuesHaveTheTargetStdAndZeroMean) {
  for (GgmlType type : {GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q4_K}) {
    const uint64_t n = 4096, rows = 256;
    const double target = 1.0 / std::sqrt(double(n));
    const auto bytes = direct_rows(type, target, n, rows, 42);
    std::vector<float> v(n * rows);
    dequantize_row(type, bytes.data(), v.data(), int64_t(v.size()));
    double sum = 0, sum_sq = 0, max_abs = 0;
    for (float x : v) {
      ASSERT_TRUE(std::isfinite(x));
      sum += x, sum_sq += double(x) * x, max_abs = std::max(max_abs, std::fabs(double(x)));
    }
    const double mean = sum / v.size(), std = std::sqrt(sum_sq / v.size() - mean * mean);
    SCOPED_TRACE(std::string(ggml_type_name(type)));
    EXPECT_NEAR(std / target, 1.0, 0.02);         // d is rounded to f16 (rel. 5e-4)
    EXPECT_LT(std::fabs(mean), 0.01 * target);    // 1M values: sampling noise ~1e-3·std
    EXPECT_LT(max_abs, 8.0 * target);             // bounded formats: no outliers
    EXPECT_GT(max_abs, 1.5 * target);
  }
}

TEST(SynthBlocks, DeterministicAndSeedSensitive) {
  for (GgmlType type : {GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q4_K}) {
    const auto a = direct_rows(type, 0.02, 512, 4, 7), b = direct_rows(type, 0.02, 512, 4, 7);
    const auto c = direct_rows(type, 0.02, 512, 4, 8);
    EXPECT_EQ(a, b);
    EXPECT_NE(a, c);
    // Blocks of one row differ from each other (independent block seeds).
    const uint64_t bb = ggml_type_info(type).block_bytes;
    EXPECT_NE(std::vector<uint8_t>(a.begin(), a.begin() + bb), std::vector<uint8_t>(a.begin() + bb, a.begin() + 2 * bb));
  }
  // Same scales whatever the call (the GPU generator recomputes them on the host).
  const SynthBlockScales s1 = synth_block_scales(GgmlType::Q2_K, 0.015625), s2 = synth_block_scales(GgmlType::Q2_K, 0.015625);
  EXPECT_EQ(s1.d_bits, s2.d_bits);
  EXPECT_EQ(s1.dmin_bits, s2.dmin_bits);
  EXPECT_NEAR(f16_to_f32(s1.dmin_bits) / f16_to_f32(s1.d_bits), 1.5, 1e-3);
}

TEST(SynthBlocks, WriterUsesDirectBlocksForExpertsOnly) {
  const ModelConfig c = preset_tiny();
  const uint64_t seed = 3;
  for (const TensorSpec& spec : model_tensor_specs(c)) {
    const GgmlType type = tensor_type_for(spec, QuantScheme::kQ2);
    const uint64_t n = spec.dims[0], row_bytes = *ggml_row_bytes(type, n);
    std::vector<uint8_t> got(2 * row_bytes), want(2 * row_bytes);
    synth_encode_rows(spec, c, type, seed, 5, 7, got.data());
    if (spec.role == TensorRole::kExpertGateUp || spec.role == TensorRole::kExpertDown) {
      ASSERT_TRUE(synth_direct_tensor(spec, type)) << spec.name;
      const uint64_t bb = ggml_type_info(type).block_bytes;
      const SynthBlockScales s = synth_block_scales(type, 1.0 / std::sqrt(double(n)));
      for (uint64_t r = 0; r < 2; ++r)
        for (uint64_t b = 0; b < n / kQK_K; ++b)
          synth_block(type, s, synth_block_seed(synth_row_seed(synth_tensor_seed(seed, spec.name), 5 + r), b),
                      want.data() + r * row_bytes + b * bb);
    } else if (type != GgmlType::I32) {
      EXPECT_FALSE(synth_direct_tensor(spec, type)) << spec.name;
      std::vector<float> values(2 * n);
      synth_tensor_rows(spec, c, seed, 5, 7, values.data());
      for (uint64_t r = 0; r < 2; ++r) quantize_row(type, values.data() + r * n, want.data() + r * row_bytes, int64_t(n));
    } else {
      continue;
    }
    EXPECT_EQ(got, want) << spec.name;
  }
  // Q8 scheme experts are Q8_0: quantised floats, not direct blocks.
  for (const TensorSpec& spec : model_tensor_specs(c))
    if (spec.role == TensorRole::kExpertDown) EXPECT_FALSE(synth_direct_tensor(spec, tensor_type_for(spec, QuantScheme::kQ8_0)));
}

TEST(SynthBlocks, DemoModelExpertsAreTheDirectBlocks) {
  auto m = load_model(std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf");
  for (const TensorSpec& spec : model_tensor_specs(m->config)) {
    if (spec.role != TensorRole::kExpertDown && spec.role != TensorRole::kExpertGateUp) continue;
    const GgufTensorInfo* info = m->file->find_tensor(spec.name);
    ASSERT_NE(info, nullptr) << spec.name;
    const uint64_t row_bytes = *ggml_row_bytes(info->type, spec.dims[0]);
    const uint64_t last = tensor_n_values(spec.dims) / spec.dims[0] - 1;
    std::vector<uint8_t> want(row_bytes);
    for (uint64_t r : {uint64_t(0), last}) {
      synth_encode_rows(spec, m->config, info->type, 1, r, r + 1, want.data());  // data/CMakeLists.txt: --seed 1
      EXPECT_EQ(std::vector<uint8_t>(info->data + r * row_bytes, info->data + (r + 1) * row_bytes), want) << spec.name;
    }
  }
}

}  // namespace
}  // namespace ds4
