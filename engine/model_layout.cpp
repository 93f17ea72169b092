// Tensor names, shapes, categories and per-scheme types of the model (MODEL.md 4.3 / 4.4).
#include "engine/model_layout.h"

namespace ds4 {
namespace {

using Dims = std::vector<uint64_t>;

struct SpecBuilder {
  std::vector<TensorSpec>& out;
  int layer;
  std::string prefix;  // "" (globals), "blk.N." or "mtp.0."
  void add(const std::string& suffix, Dims dims, TensorRole role, TensorCategory cat, bool optional = false) {
    out.push_back({prefix + suffix, std::move(dims), role, cat, layer, optional});
  }
};

void add_hc(SpecBuilder& b, const ModelConfig& c, const std::string& which) {
  const uint64_t hc_in = static_cast<uint64_t>(c.hc_count) * c.n_embd;
  b.add("hc_" + which + "_fn.weight", {hc_in, uint64_t(c.hc_mix_dim())}, TensorRole::kMatrixF16, TensorCategory::kHcFns);
  b.add("hc_" + which + "_scale.weight", {3}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  b.add("hc_" + which + "_base.weight", {uint64_t(c.hc_mix_dim())}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
}

void add_compressor(SpecBuilder& b, const ModelConfig& c, const std::string& prefix, uint64_t row_dim, int ratio,
                    TensorCategory cat) {
  const uint64_t width = (ratio == 4 ? 2 : 1) * row_dim;  // ratio 4 keeps two overlapping halves
  const uint64_t n_embd = c.n_embd;
  b.add(prefix + "_ape.weight", {width, uint64_t(ratio)}, TensorRole::kMatrixF16, cat);
  b.add(prefix + "_kv.weight", {n_embd, width}, TensorRole::kMatrixF16, cat);
  b.add(prefix + "_gate.weight", {n_embd, width}, TensorRole::kMatrixF16, cat);
  b.add(prefix + "_norm.weight", {row_dim}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
}

void add_attention(SpecBuilder& b, const ModelConfig& c) {
  const uint64_t n_embd = c.n_embd, ql = c.q_lora_rank, hd = c.head_dim;
  const uint64_t o_low = uint64_t(c.o_groups) * c.o_lora_rank;
  b.add("attn_norm.weight", {n_embd}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  b.add("attn_q_a.weight", {n_embd, ql}, TensorRole::kMatrixQ8, TensorCategory::kAttention);
  b.add("attn_q_a_norm.weight", {ql}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  b.add("attn_q_b.weight", {ql, uint64_t(c.q_dim())}, TensorRole::kMatrixQ8, TensorCategory::kAttention);
  b.add("attn_kv.weight", {n_embd, hd}, TensorRole::kMatrixQ8, TensorCategory::kAttention);
  b.add("attn_kv_a_norm.weight", {hd}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  b.add("attn_sinks.weight", {uint64_t(c.n_head)}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  b.add("attn_output_a.weight", {uint64_t(c.o_group_width()), o_low}, TensorRole::kMatrixQ8, TensorCategory::kAttention);
  b.add("attn_output_b.weight", {o_low, n_embd}, TensorRole::kMatrixQ8, TensorCategory::kAttention);
}

void add_compressed_attention(SpecBuilder& b, const ModelConfig& c, int layer) {
  const int ratio = c.compress_ratio(layer);
  if (ratio == 0) return;
  add_compressor(b, c, "attn_compressor", c.head_dim, ratio, TensorCategory::kCompressors);
  if (c.attention_kind(layer) != AttentionKind::kCompressedSparse) return;
  const uint64_t idx_width = uint64_t(c.indexer_heads) * c.indexer_dim;
  b.add("indexer.attn_q_b.weight", {uint64_t(c.q_lora_rank), idx_width}, TensorRole::kMatrixF16, TensorCategory::kIndexer);
  b.add("indexer.proj.weight", {uint64_t(c.n_embd), uint64_t(c.indexer_heads)}, TensorRole::kMatrixF16, TensorCategory::kIndexer);
  add_compressor(b, c, "indexer_compressor", c.indexer_dim, ratio, TensorCategory::kIndexer);
}

void add_ffn(SpecBuilder& b, const ModelConfig& c, bool hash_routing, bool bias_optional) {
  const uint64_t n_embd = c.n_embd, ffn = c.expert_ffn, ne = c.n_expert;
  const uint64_t shared_ffn = uint64_t(c.expert_ffn) * c.n_expert_shared;
  b.add("ffn_norm.weight", {n_embd}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  b.add("ffn_gate_inp.weight", {n_embd, ne}, TensorRole::kMatrixF16, TensorCategory::kRouter);
  if (hash_routing)
    b.add("ffn_gate_tid2eid.weight", {uint64_t(c.n_expert_used), uint64_t(c.n_vocab)}, TensorRole::kIndexI32,
          TensorCategory::kHashTables);
  else
    b.add("exp_probs_b.bias", {ne}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases, bias_optional);
  b.add("ffn_gate_exps.weight", {n_embd, ffn, ne}, TensorRole::kExpertGateUp, TensorCategory::kRoutedExperts);
  b.add("ffn_up_exps.weight", {n_embd, ffn, ne}, TensorRole::kExpertGateUp, TensorCategory::kRoutedExperts);
  b.add("ffn_down_exps.weight", {ffn, n_embd, ne}, TensorRole::kExpertDown, TensorCategory::kRoutedExperts);
  b.add("ffn_gate_shexp.weight", {n_embd, shared_ffn}, TensorRole::kMatrixQ8, TensorCategory::kSharedExperts);
  b.add("ffn_up_shexp.weight", {n_embd, shared_ffn}, TensorRole::kMatrixQ8, TensorCategory::kSharedExperts);
  b.add("ffn_down_shexp.weight", {shared_ffn, n_embd}, TensorRole::kMatrixQ8, TensorCategory::kSharedExperts);
}

}  // namespace

const char* tensor_category_name(TensorCategory category) {
  static const char* const kNames[kNumTensorCategories] = {
      "routed experts", "attention projections", "shared experts", "token embedding", "output head", "compressors",
      "indexer", "router gate_inp", "HC fns", "hash tables", "norms, sinks, biases"};
  return kNames[static_cast<int>(category)];
}

std::optional<QuantScheme> quant_scheme_from_name(const std::string& name) {
  if (name == "q2") return QuantScheme::kQ2;
  if (name == "q4") return QuantScheme::kQ4;
  if (name == "q8_0") return QuantScheme::kQ8_0;
  if (name == "f16") return QuantScheme::kF16;
  if (name == "f32") return QuantScheme::kF32;
  return std::nullopt;
}

const char* quant_scheme_name(QuantScheme scheme) {
  switch (scheme) {
    case QuantScheme::kQ2: return "q2";
    case QuantScheme::kQ4: return "q4";
    case QuantScheme::kQ8_0: return "q8_0";
    case QuantScheme::kF16: return "f16";
    case QuantScheme::kF32: return "f32";
  }
  return "?";
}

std::vector<TensorSpec> model_tensor_specs(const ModelConfig& c) {
  std::vector<TensorSpec> specs;
  const uint64_t n_embd = c.n_embd, vocab = c.n_vocab, hc_in = uint64_t(c.hc_count) * c.n_embd;
  SpecBuilder g{specs, -1, ""};
  g.add("token_embd.weight", {n_embd, vocab}, TensorRole::kMatrixF16, TensorCategory::kEmbedding);
  g.add("output.weight", {n_embd, vocab}, TensorRole::kMatrixQ8, TensorCategory::kOutputHead);
  g.add("output_norm.weight", {n_embd}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  g.add("output_hc_fn.weight", {hc_in, uint64_t(c.hc_count)}, TensorRole::kMatrixF16, TensorCategory::kHcFns);
  g.add("output_hc_base.weight", {uint64_t(c.hc_count)}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  g.add("output_hc_scale.weight", {1}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  for (int il = 0; il < c.n_layer; ++il) {
    SpecBuilder b{specs, il, "blk." + std::to_string(il) + "."};
    add_hc(b, c, "attn");
    add_attention(b, c);
    add_compressed_attention(b, c, il);
    add_hc(b, c, "ffn");
    add_ffn(b, c, c.is_hash_layer(il), /*bias_optional=*/true);
  }
  return specs;
}

std::vector<TensorSpec> mtp_tensor_specs(const ModelConfig& c) {
  std::vector<TensorSpec> specs;
  const uint64_t n_embd = c.n_embd, hc_in = uint64_t(c.hc_count) * c.n_embd;
  SpecBuilder b{specs, kMtpLayer, "mtp.0."};
  b.add("hc_head_base.weight", {uint64_t(c.hc_count)}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  b.add("hc_head_fn.weight", {hc_in, uint64_t(c.hc_count)}, TensorRole::kMatrixF16, TensorCategory::kHcFns);
  b.add("hc_head_scale.weight", {1}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  b.add("e_proj.weight", {n_embd, n_embd}, TensorRole::kMatrixQ8, TensorCategory::kAttention);
  b.add("h_proj.weight", {n_embd, n_embd}, TensorRole::kMatrixQ8, TensorCategory::kAttention);
  b.add("enorm.weight", {n_embd}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  b.add("hnorm.weight", {n_embd}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  b.add("norm.weight", {n_embd}, TensorRole::kVectorF32, TensorCategory::kNormsSinksBiases);
  add_hc(b, c, "attn");
  add_attention(b, c);
  add_hc(b, c, "ffn");
  add_ffn(b, c, /*hash_routing=*/false, /*bias_optional=*/false);
  return specs;
}

GgmlType tensor_type_for(const TensorSpec& spec, QuantScheme scheme) {
  if (spec.role == TensorRole::kIndexI32) return GgmlType::I32;
  if (spec.role == TensorRole::kVectorF32 || scheme == QuantScheme::kF32) return GgmlType::F32;
  if (scheme == QuantScheme::kF16) return GgmlType::F16;
  switch (spec.role) {
    case TensorRole::kMatrixF16: return GgmlType::F16;
    case TensorRole::kMatrixQ8: return GgmlType::Q8_0;
    case TensorRole::kExpertGateUp:
      return scheme == QuantScheme::kQ2 ? GgmlType::IQ2_XXS : scheme == QuantScheme::kQ4 ? GgmlType::Q4_K : GgmlType::Q8_0;
    case TensorRole::kExpertDown:
      return scheme == QuantScheme::kQ2 ? GgmlType::Q2_K : scheme == QuantScheme::kQ4 ? GgmlType::Q4_K : GgmlType::Q8_0;
    default: return GgmlType::F32;
  }
}

bool tensor_type_allowed(const TensorSpec& spec, GgmlType type) {
  if (spec.role == TensorRole::kIndexI32) return type == GgmlType::I32;
  if (spec.role == TensorRole::kVectorF32) return type == GgmlType::F32;
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q8_0:
    case GgmlType::Q2_K: case GgmlType::Q4_K: case GgmlType::IQ2_XXS:
      return tensor_bytes(spec.dims, type).has_value();
    default: return false;
  }
}

uint64_t tensor_n_values(const std::vector<uint64_t>& dims) {
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;
  return n;
}

std::optional<uint64_t> tensor_bytes(const std::vector<uint64_t>& dims, GgmlType type) {
  if (dims.empty()) return std::nullopt;
  const auto row = ggml_row_bytes(type, dims[0]);
  if (!row) return std::nullopt;
  return *row * (tensor_n_values(dims) / dims[0]);
}

}  // namespace ds4
