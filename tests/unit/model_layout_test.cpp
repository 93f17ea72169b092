// Model config, tensor layout and weight binding: the published layout and sizes, metadata round
// trip, validation messages, and binding errors that name the tensor, expected and found values.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>

#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/model_info.h"
#include "engine/model_layout.h"
#include "engine/synth.h"

namespace ds4 {
namespace {

uint64_t total_tensor_bytes(const ModelConfig& c, QuantScheme s) {
  uint64_t total = 0;
  for (const auto& spec : model_tensor_specs(c)) total += *tensor_bytes(spec.dims, tensor_type_for(spec, s));
  return total;
}

TEST(ModelLayout, PublishedFlashLayout) {
  const ModelConfig c = preset_flash();
  const auto specs = model_tensor_specs(c);
  EXPECT_EQ(specs.size(), 1328u);  // 1288 + exp_probs_b on the 40 learned-routing layers
  EXPECT_NEAR(total_tensor_bytes(c, QuantScheme::kQ2) / 1e9, 86.71, 0.005) << "MODEL.md 4.4: 86.71 GB";
  EXPECT_NEAR(total_tensor_bytes(c, QuantScheme::kQ4) / 1e9, 164.63, 0.005) << "MODEL.md 4.4: 164.63 GB";
  EXPECT_NEAR(total_tensor_bytes(c, QuantScheme::kQ2) / 1073741824.0, 80.76, 0.005);
  EXPECT_NEAR(total_tensor_bytes(c, QuantScheme::kQ4) / 1073741824.0, 153.32, 0.005);
  EXPECT_TRUE(differences_from_flash(c).empty());
  EXPECT_TRUE(config_problems(c).empty());
}

TEST(ModelLayout, FlashTensorShapesAndTypes) {
  const ModelConfig c = preset_flash();
  std::map<std::string, TensorSpec> by_name;
  for (const auto& s : model_tensor_specs(c)) by_name.emplace(s.name, s);
  auto expect = [&](const std::string& name, std::vector<uint64_t> dims, GgmlType q2_type) {
    ASSERT_TRUE(by_name.count(name)) << name;
    EXPECT_EQ(by_name.at(name).dims, dims) << name;
    EXPECT_EQ(tensor_type_for(by_name.at(name), QuantScheme::kQ2), q2_type) << name;
  };
  expect("token_embd.weight", {4096, 129280}, GgmlType::F16);
  expect("output.weight", {4096, 129280}, GgmlType::Q8_0);
  expect("output_hc_fn.weight", {16384, 4}, GgmlType::F16);
  expect("blk.0.hc_attn_fn.weight", {16384, 24}, GgmlType::F16);
  expect("blk.0.attn_q_b.weight", {1024, 32768}, GgmlType::Q8_0);
  expect("blk.0.attn_output_a.weight", {4096, 8192}, GgmlType::Q8_0);
  expect("blk.0.attn_output_b.weight", {8192, 4096}, GgmlType::Q8_0);
  expect("blk.0.ffn_gate_tid2eid.weight", {6, 129280}, GgmlType::I32);
  expect("blk.2.attn_compressor_ape.weight", {1024, 4}, GgmlType::F16);
  expect("blk.3.attn_compressor_ape.weight", {512, 128}, GgmlType::F16);
  expect("blk.2.indexer_compressor_kv.weight", {4096, 256}, GgmlType::F16);
  expect("blk.2.indexer.attn_q_b.weight", {1024, 8192}, GgmlType::F16);
  expect("blk.42.ffn_gate_exps.weight", {4096, 2048, 256}, GgmlType::IQ2_XXS);
  expect("blk.42.ffn_down_exps.weight", {2048, 4096, 256}, GgmlType::Q2_K);
  expect("blk.3.exp_probs_b.bias", {256}, GgmlType::F32);
  EXPECT_FALSE(by_name.count("blk.2.exp_probs_b.bias"));
  EXPECT_FALSE(by_name.count("blk.3.indexer.proj.weight"));  // HCA layers have no indexer
  EXPECT_FALSE(by_name.count("blk.1.attn_compressor_kv.weight"));
}

TEST(ModelConfig, ValidationNamesProblems) {
  ModelConfig c = preset_tiny();
  c.n_head = 3;  // not a multiple of the 2 output groups
  c.compress_ratios[2] = 1;
  const auto p = config_problems(c);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_NE(p[0].find("output_group_count"), std::string::npos);
  EXPECT_NE(p[1].find("compress_ratios[2] = 1"), std::string::npos);
  EXPECT_THROW(validate_config(c), LoadError);
}

TEST(ModelConfig, PresetByNameRejectsUnknown) {
  EXPECT_EQ(preset_by_name("full").n_layer, 43);
  EXPECT_EQ(preset_by_name("tiny").n_layer, 6);
  EXPECT_THROW(preset_by_name("huge"), LoadError);
}

// A small-vocab tiny config (so files are a few MB) written with zero data; `edit` may change the
// tensor list before writing.
ModelConfig small_vocab_tiny() {
  ModelConfig c = preset_tiny();
  c.n_vocab = 512;
  return c;
}

std::string write_model(const ModelConfig& c, const std::function<void(std::vector<TensorSpec>&)>& edit,
                        const std::function<void(GgufWriter&)>& extra_metadata = nullptr) {
  // One file per test: ctest runs each test of this binary as its own process, in parallel.
  const std::string path = testing::TempDir() + "/layout_test_" +
                           testing::UnitTest::GetInstance()->current_test_info()->name() + ".gguf";
  auto specs = model_tensor_specs(c);
  if (edit) edit(specs);
  GgufWriter w(path);
  write_config_metadata(c, w);
  if (extra_metadata) extra_metadata(w);
  std::vector<GgmlType> types;
  for (auto& s : specs) {
    types.push_back(tensor_type_for(s, QuantScheme::kF16));
    w.add_tensor(s.name, types.back(), s.dims);
  }
  w.write_header();
  for (size_t i = 0; i < specs.size(); ++i) {
    std::vector<uint8_t> zeros(*tensor_bytes(specs[i].dims, types[i]));
    w.append_tensor_data(zeros);
  }
  w.finish();
  return path;
}

TEST(ModelBinding, ConfigRoundTripsThroughMetadata) {
  const ModelConfig c = small_vocab_tiny();
  auto m = load_model(write_model(c, nullptr));
  EXPECT_EQ(describe_config(m->config), describe_config(c));
  EXPECT_EQ(m->weights.layers.size(), 6u);
  EXPECT_TRUE(m->weights.layers[2].indexer_proj.present());
  EXPECT_FALSE(m->weights.layers[3].indexer_proj.present());
  EXPECT_EQ(matching_scheme(*m->file, m->config), QuantScheme::kF16);
}

void expect_load_error(const std::string& path, const std::vector<std::string>& fragments) {
  try {
    load_model(path);
    FAIL() << "expected a LoadError";
  } catch (const LoadError& e) {
    for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

TEST(ModelBinding, MissingTensorIsNamed) {
  const auto path = write_model(small_vocab_tiny(), [](std::vector<TensorSpec>& s) {
    std::erase_if(s, [](const TensorSpec& t) { return t.name == "blk.4.indexer.proj.weight"; });
  });
  expect_load_error(path, {"missing tensor 'blk.4.indexer.proj.weight'", "[256, 16]"});
}

TEST(ModelBinding, WrongShapeIsNamedWithExpectedAndFound) {
  const auto path = write_model(small_vocab_tiny(), [](std::vector<TensorSpec>& s) {
    for (auto& t : s)
      if (t.name == "blk.1.attn_q_b.weight") t.dims = {128, 256};
  });
  expect_load_error(path, {"blk.1.attn_q_b.weight", "expected dims [128, 512]", "found [128, 256]"});
}

TEST(ModelBinding, MissingMetadataKeyIsNamed) {
  const std::string path = testing::TempDir() + "/no_meta.gguf";
  {
    GgufWriter w(path);
    w.add_metadata("general.architecture", GgufValue::string("deepseek4"));
    w.add_metadata("deepseek4.block_count", GgufValue::u32(6));
    w.write_header();
    w.finish();
  }
  expect_load_error(path, {"missing metadata key deepseek4.embedding_length"});
}

TEST(ModelBinding, WrongArchitectureIsRejected) {
  const std::string path = testing::TempDir() + "/llama.gguf";
  {
    GgufWriter w(path);
    w.add_metadata("general.architecture", GgufValue::string("llama"));
    w.write_header();
    w.finish();
  }
  expect_load_error(path, {"general.architecture is 'llama'"});
}

TEST(Synth, ValuesAreDeterministicAndScaled) {
  const ModelConfig c = preset_tiny();
  const auto specs = model_tensor_specs(c);
  const TensorSpec* q_b = nullptr;
  for (const auto& s : specs)
    if (s.name == "blk.0.attn_q_b.weight") q_b = &s;
  ASSERT_NE(q_b, nullptr);
  std::vector<float> a(8 * q_b->dims[0]), b(a.size()), other(a.size());
  synth_tensor_rows(*q_b, c, 7, 0, 8, a.data());
  synth_tensor_rows(*q_b, c, 7, 0, 8, b.data());
  synth_tensor_rows(*q_b, c, 8, 0, 8, other.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, other);
  double sum_sq = 0;
  for (float x : a) sum_sq += x * x;
  EXPECT_NEAR(std::sqrt(sum_sq / a.size()), 1.0 / std::sqrt(double(q_b->dims[0])), 0.02);
}

TEST(Synth, DemoModelMatchesItsLayout) {
  auto m = load_model(std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf");
  EXPECT_EQ(matching_scheme(*m->file, m->config), QuantScheme::kQ2);
  EXPECT_EQ(m->file->tensors().size(), model_tensor_specs(m->config).size());
  // Hash tables hold distinct valid experts per token.
  const auto& tid = m->weights.layers[0].ffn_gate_tid2eid;
  for (int64_t tok = 0; tok < 1000; ++tok) {
    std::set<int32_t> seen;
    for (int k = 0; k < m->config.n_expert_used; ++k) {
      const int32_t e = tid.i32()[tok * m->config.n_expert_used + k];
      EXPECT_GE(e, 0);
      EXPECT_LT(e, m->config.n_expert);
      seen.insert(e);
    }
    EXPECT_EQ(seen.size(), size_t(m->config.n_expert_used));
  }
}

TEST(Synth, RejectsWidthsTheSchemeCannotHold) {
  SynthOptions o;
  o.config = small_vocab_tiny();
  o.config.n_embd = 96;  // not a multiple of 256: IQ2_XXS experts impossible
  o.scheme = QuantScheme::kQ2;
  o.dry_run = true;
  o.tokenizer_dir = std::string(DS4_BINARY_DIR) + "/data/tokenizer";
  try {
    synthesize_model(o, "");
    FAIL();
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer has 129280 tokens"), std::string::npos) << e.what();
  }
  o.config.n_vocab = 129280;
  try {
    synthesize_model(o, "");
    FAIL();
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find("not a multiple of the IQ2_XXS block size"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ds4

namespace ds4 {
namespace {

// The type table: id <-> info <-> name agree for every supported type, block sizes per MODEL.md 4.5.
TEST(GgmlTypes, TableIsConsistent) {
  const std::pair<GgmlType, std::pair<uint32_t, uint32_t>> expected[] = {
      {GgmlType::F32, {1, 4}},       {GgmlType::F16, {1, 2}},    {GgmlType::Q8_0, {32, 34}},
      {GgmlType::Q2_K, {256, 84}},   {GgmlType::Q4_K, {256, 144}}, {GgmlType::Q8_K, {256, 292}},
      {GgmlType::IQ2_XXS, {256, 66}}, {GgmlType::I32, {1, 4}},    {GgmlType::BF16, {1, 2}},
  };
  for (const auto& [type, geometry] : expected) {
    const GgmlTypeInfo& info = ggml_type_info(type);
    EXPECT_EQ(info.type, type);
    EXPECT_EQ(info.block_values, geometry.first) << info.name;
    EXPECT_EQ(info.block_bytes, geometry.second) << info.name;
    EXPECT_EQ(ggml_type_info(static_cast<uint32_t>(type))->name, info.name);
    EXPECT_EQ(ggml_type_from_name(info.name), type);
  }
  EXPECT_FALSE(ggml_type_info(uint32_t{2}).has_value());  // Q4_0: not a type we read
  EXPECT_EQ(ggml_row_bytes(GgmlType::IQ2_XXS, 4096), 1056u);
  EXPECT_FALSE(ggml_row_bytes(GgmlType::Q2_K, 100).has_value());
}

}  // namespace
}  // namespace ds4
