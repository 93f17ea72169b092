// Golden tests against HF transformers' DeepseekV4ForCausalLM (tests/golden/, made by
// scripts/hf_goldens.py): each checkpoint is converted with our converter and run by the CPU
// backend with the in-graph KV quantisation off (HF does not apply it); logits must match HF at
// every position within 1e-4 (per position max |ours - hf| / max |hf|) for the whole sequence at
// once, chunked prefill with random chunk sizes, and one token at a time.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "engine/cpu_backend.h"
#include "engine/hf_convert.h"
#include "engine/model.h"

namespace ds4 {
namespace {

constexpr double kTolerance = 1e-4;

template <typename T>
std::vector<T> read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  EXPECT_TRUE(in) << path;
  const auto size = static_cast<size_t>(in.tellg());
  std::vector<T> v(size / sizeof(T));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
  return v;
}

struct Golden {
  std::unique_ptr<Model> model;
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // [n_tokens, vocab]
};

Golden load_golden(const std::string& name) {
  const std::string dir = std::string(DS4_SOURCE_DIR) + "/tests/golden/" + name;
  const std::string gguf = testing::TempDir() + "/" + name + ".gguf";
  convert_hf_checkpoint(dir, gguf);
  Golden g;
  g.model = load_model(gguf);
  g.tokens = read_raw<int32_t>(dir + "/tokens.i32");
  g.logits = read_raw<float>(dir + "/logits.f32");
  EXPECT_EQ(g.logits.size(), g.tokens.size() * g.model->config.n_vocab);
  return g;
}

std::vector<float> run(const Golden& g, const std::vector<int>& chunks) {
  CpuBackend backend(g.model->config, g.model->weights, ForwardOptions{.quantize_kv = false});
  ContiguousKv kv(g.model->config);
  std::vector<float> out;
  size_t pos = 0;
  for (int len : chunks) {
    ForwardBatch b;
    b.sequences.push_back({&kv, std::span<const int32_t>(g.tokens).subspan(pos, len), true});
    const ForwardOutput o = backend.forward(b);
    out.insert(out.end(), o.logits.begin(), o.logits.end());
    pos += len;
  }
  return out;
}

// max over positions of max_v |ours - hf| / max_v |hf|
double max_position_error(const std::vector<float>& ours, const std::vector<float>& hf, int vocab) {
  double worst = 0.0;
  for (size_t p = 0; p < hf.size() / vocab; ++p) {
    double diff = 0.0, scale = 0.0;
    for (int v = 0; v < vocab; ++v) {
      diff = std::max(diff, std::fabs(double(ours[p * vocab + v]) - hf[p * vocab + v]));
      scale = std::max(scale, std::fabs(double(hf[p * vocab + v])));
    }
    worst = std::max(worst, diff / scale);
  }
  return worst;
}

class HfGolden : public testing::TestWithParam<std::string> {};

TEST_P(HfGolden, LogitsMatchAtEveryPosition) {
  const Golden g = load_golden(GetParam());
  const int n = static_cast<int>(g.tokens.size()), vocab = g.model->config.n_vocab;
  std::mt19937 rng(std::hash<std::string>{}(GetParam()) & 0xffff);
  std::vector<int> chunks;
  for (int left = n; left > 0;) {
    const int len = std::min<int>(left, 1 + rng() % 64);
    chunks.push_back(len);
    left -= len;
  }
  const double whole = max_position_error(run(g, {n}), g.logits, vocab);
  const double chunked = max_position_error(run(g, chunks), g.logits, vocab);
  const double stepwise = max_position_error(run(g, std::vector<int>(n, 1)), g.logits, vocab);
  std::printf("[ golden %s ] max relative error: whole %.3g, chunked %.3g, token-by-token %.3g\n", GetParam().c_str(),
              whole, chunked, stepwise);
  EXPECT_LT(whole, kTolerance);
  EXPECT_LT(chunked, kTolerance);
  EXPECT_LT(stepwise, kTolerance);
}

std::vector<std::string> golden_names() {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(std::string(DS4_SOURCE_DIR) + "/tests/golden"))
    if (std::filesystem::exists(e.path() / "logits.f32")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

INSTANTIATE_TEST_SUITE_P(Configs, HfGolden, testing::ValuesIn(golden_names()));

TEST(HfGoldenSet, CoversAtLeastThreeConfigs) { EXPECT_GE(golden_names().size(), 3u); }

}  // namespace
}  // namespace ds4

namespace ds4 {
namespace {

// v4_tiny_b's heads (32 wide, 16 rotated) cannot take the FP8 blocks of 64: a clear error, not an abort.
TEST(HfGoldenSet, KvQuantizationRefusesShapesItCannotTake) {
  const Golden g = load_golden("v4_tiny_b");
  try {
    CpuBackend backend(g.model->config, g.model->weights, ForwardOptions{.quantize_kv = true});
    FAIL() << "expected a LoadError";
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find("multiple of 64"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ds4
