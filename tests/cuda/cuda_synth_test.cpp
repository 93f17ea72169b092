// Synthetic weights generated in GPU memory: the direct-block kernel equals the host generator
// byte for byte, and DeviceWeights::synthesize gives exactly the tensors of the file that
// `ds4serve-model synth` writes with the same options (the demo model, and the larger `small`
// model where scripts/gpu_check.sh made it); the full-size q2 layout's byte count.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <vector>

#include "engine/cuda/cuda_weights.h"
#include "engine/model.h"
#include "engine/model_layout.h"
#include "kernels/cuda/synth.h"
#include "kernels/synth_blocks.h"
#include "tests/cuda/gpu_test_util.h"

namespace ds4 {
namespace {

TEST(CudaSynth, KernelEqualsHostBlocks) {
  DS4_REQUIRE_GPU();
  for (GgmlType type : {GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q4_K}) {
    const uint64_t rows = 37, blocks_per_row = 3, bb = ggml_type_info(type).block_bytes;
    const SynthBlockScales scales = synth_block_scales(type, 0.03);
    std::vector<uint8_t> want(rows * blocks_per_row * bb);
    for (uint64_t r = 0; r < rows; ++r)
      for (uint64_t b = 0; b < blocks_per_row; ++b)
        synth_block(type, scales, synth_block_seed(synth_row_seed(0xabcdef12345ull, r), b),
                    want.data() + (r * blocks_per_row + b) * bb);
    test::DeviceArray<uint8_t> out(want.size());
    cuda::SynthBlocksParams p;
    p.out = out.get(), p.type = type, p.scales = scales, p.tensor_seed = 0xabcdef12345ull;
    p.n_rows = rows, p.blocks_per_row = blocks_per_row;
    cuda::synth_blocks(p, nullptr);
    EXPECT_EQ(out.to_host(), want) << ggml_type_name(type);
  }
}

// Every tensor of the model file equals the synthesized device tensor, byte for byte.
void expect_equals_file(const std::string& path, uint64_t seed) {
  const auto model = load_model(path);
  int progress_calls = 0;
  const DeviceWeights d = DeviceWeights::synthesize(model->config, QuantScheme::kQ2, seed, 0,
                                                    [&](uint64_t, uint64_t) { ++progress_calls; });
  const auto specs = model_tensor_specs(model->config);
  EXPECT_EQ(progress_calls, static_cast<int>(specs.size()));
  EXPECT_EQ(d.bytes(), DeviceWeights::synthetic_bytes(model->config, QuantScheme::kQ2));
  size_t checked = 0;
  for (const TensorSpec& spec : specs) {
    const GgufTensorInfo* info = model->file->find_tensor(spec.name);
    const DeviceTensor* t = d.tensor_for(spec);
    ASSERT_TRUE(info && t) << spec.name;
    ASSERT_EQ(t->type, info->type) << spec.name;
    ASSERT_EQ(t->bytes(), info->n_bytes) << spec.name;
    std::vector<uint8_t> got(info->n_bytes);
    DS4_CUDA_CHECK(cudaMemcpy(got.data(), t->data, got.size(), cudaMemcpyDeviceToHost));
    EXPECT_TRUE(std::equal(got.begin(), got.end(), info->data)) << spec.name << " differs from the file";
    ++checked;
  }
  std::printf("[ gpu ] %s: %zu tensors, %.1f MB, identical to the file\n", path.c_str(), checked, d.bytes() / 1e6);
}

TEST(CudaSynth, DemoModelEqualsTheFile) {
  DS4_REQUIRE_GPU();
  expect_equals_file(test::binary_dir() + "/models/tiny-q2.gguf", 1);  // data/CMakeLists.txt: --seed 1
}

TEST(CudaSynth, SmallModelEqualsTheFile) {
  DS4_REQUIRE_GPU();
  const std::string path = test::binary_dir() + "/models/small-q2.gguf";  // scripts/gpu_check.sh: --seed 1
  if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not generated (scripts/gpu_check.sh makes it)";
  expect_equals_file(path, 1);
}

TEST(CudaSynth, FullSizeLayoutBytes) {
  // The published q2 file's 86.71 GB of tensor data plus the 256-byte alignment of each tensor.
  const uint64_t bytes = DeviceWeights::synthetic_bytes(preset_flash(), QuantScheme::kQ2);
  EXPECT_NEAR(bytes / 1e9, 86.71, 0.01);
}

}  // namespace
}  // namespace ds4
