// The tensor layout of a DeepSeek V4 Flash-shaped model (MODEL.md 4.3): every tensor's GGUF name,
// dims, category (MODEL.md 4.4) and type under each quantisation scheme. The one place tensor
// names and shapes are spelled out; the binder, the synthetic-model generator, `info` and the HF
// converter all use it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/model_config.h"
#include "kernels/ggml_type.h"

namespace ds4 {

enum class TensorCategory {
  kRoutedExperts, kAttention, kSharedExperts, kEmbedding, kOutputHead, kCompressors,
  kIndexer, kRouter, kHcFns, kHashTables, kNormsSinksBiases,
};
constexpr int kNumTensorCategories = 11;
const char* tensor_category_name(TensorCategory category);

// How a tensor is stored in the published files, which decides its type under each scheme.
enum class TensorRole {
  kVectorF32,     // norms, sinks, biases, HC scale/base: always F32
  kMatrixF16,     // embedding, HC fns, router, compressors, indexer: F16 when published
  kMatrixQ8,      // attention projections, shared experts, output head: Q8_0 when published
  kExpertGateUp,  // routed gate/up: IQ2_XXS (q2) / Q4_K (q4)
  kExpertDown,    // routed down: Q2_K (q2) / Q4_K (q4)
  kIndexI32,      // hash routing table
};

enum class QuantScheme { kQ2, kQ4, kQ8_0, kF16, kF32 };
std::optional<QuantScheme> quant_scheme_from_name(const std::string& name);  // q2 q4 q8_0 f16 f32
const char* quant_scheme_name(QuantScheme scheme);

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> dims;  // [ne0, ne1, (ne2)]
  TensorRole role;
  TensorCategory category;
  int layer = -1;       // -1 for global tensors, kMtpLayer for the MTP module
  bool optional = false;
};

// Every tensor of the model in file order (globals first, then blk.0 ...). exp_probs_b is listed
// (optional) for the learned-routing layers only, which gives the published count of 1328.
std::vector<TensorSpec> model_tensor_specs(const ModelConfig& config);

// The MTP draft module's tensors (separate GGUF, MODEL.md 3.1): head, e/h projections and norms,
// and one raw-window block with learned routing (exp_probs_b required). layer = kMtpLayer.
constexpr int kMtpLayer = -2;
std::vector<TensorSpec> mtp_tensor_specs(const ModelConfig& config);

GgmlType tensor_type_for(const TensorSpec& spec, QuantScheme scheme);
// Types the binder accepts for a tensor of this role whose rows are ne0 wide.
bool tensor_type_allowed(const TensorSpec& spec, GgmlType type);

uint64_t tensor_n_values(const std::vector<uint64_t>& dims);
// Bytes of a tensor with these dims and type; nullopt when ne0 is not a whole number of blocks.
std::optional<uint64_t> tensor_bytes(const std::vector<uint64_t>& dims, GgmlType type);

}  // namespace ds4
