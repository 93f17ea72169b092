// HF DeepseekV4 checkpoint -> GGUF conversion (see hf_convert.h). Name map: model.layers.N.* ->
// blk.N.*; HF Linear weights [out, in] are GGUF [in, out] with the same bytes; the fused expert
// gate_up_proj [E, 2F, H] is split into gate (first F rows) and up (last F rows) per expert.
#include "engine/hf_convert.h"

#include <fstream>
#include <map>
#include <simdjson.h>
#include <sstream>

#include "engine/gguf.h"
#include "engine/load_error.h"
#include "engine/model_layout.h"
#include "engine/safetensors.h"
#include "kernels/quant.h"

namespace ds4 {
namespace {

using simdjson::ondemand::object;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw LoadError("cannot open " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Small typed view of config.json (parsed once into a DOM).
struct HfConfig {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  std::string path;
  simdjson::dom::element get(const char* key) const {
    simdjson::dom::element e;
    if (root[key].get(e)) throw LoadError(path + ": missing key '" + key + "'");
    return e;
  }
  bool has(const char* key) const { return !root[key].error() && !root[key].is_null(); }
  int64_t integer(const char* key) const {
    int64_t v;
    if (get(key).get_int64().get(v)) throw LoadError(path + ": '" + key + "' is not an integer");
    return v;
  }
  double number(const char* key) const {
    double v;
    if (get(key).get_double().get(v)) throw LoadError(path + ": '" + key + "' is not a number");
    return v;
  }
};

void read_rope(const HfConfig& hf, ModelConfig& c) {
  simdjson::dom::element rope = hf.get("rope_parameters");
  auto num = [&](simdjson::dom::element obj, const char* key, double fallback) {
    double v;
    return obj[key].get_double().get(v) ? fallback : v;
  };
  simdjson::dom::element main_rope, compress;
  if (rope["main"].get(main_rope) || rope["compress"].get(compress))
    throw LoadError(hf.path + ": rope_parameters needs 'main' and 'compress' entries");
  c.rope_base = static_cast<float>(num(main_rope, "rope_theta", 10000.0));
  c.compress_rope_base = static_cast<float>(num(compress, "rope_theta", c.rope_base));
  std::string_view type;
  if (compress["rope_type"].get_string().get(type)) type = "default";
  if (type == "yarn") {
    c.yarn_factor = static_cast<float>(num(compress, "factor", 1.0));
    c.yarn_orig_ctx = static_cast<int>(num(compress, "original_max_position_embeddings", 65536));
    c.yarn_beta_fast = static_cast<float>(num(compress, "beta_fast", 32.0));
    c.yarn_beta_slow = static_cast<float>(num(compress, "beta_slow", 1.0));
    if (num(compress, "attention_factor", -1.0) != 1.0)
      throw LoadError(hf.path + ": compress attention_factor must be 1 (the model cancels the YaRN magnitude factor)");
  } else if (type == "default") {
    c.yarn_factor = 1.0f;  // no YaRN: the ramp is unused; record the plain context length
    c.yarn_orig_ctx = c.context_length;
  } else {
    throw LoadError(hf.path + ": unsupported compress rope_type '" + std::string(type) + "'");
  }
  std::string_view main_type;
  if (!main_rope["rope_type"].get_string().get(main_type) && main_type != "default")
    throw LoadError(hf.path + ": unsupported main rope_type '" + std::string(main_type) + "'");
}

void read_layer_kinds(const HfConfig& hf, ModelConfig& c) {
  simdjson::dom::element rates = hf.get("compress_rates");
  int64_t csa = 4, hca = 128;
  if (rates["compressed_sparse_attention"].get_int64().get(csa) || rates["heavily_compressed_attention"].get_int64().get(hca))
    throw LoadError(hf.path + ": compress_rates needs integer rates for both compressed layer types");
  if (csa != 4) throw LoadError(hf.path + ": CSA ratio " + std::to_string(csa) + " != 4 (compressed_sparse_attention)");
  if (hca == 4) throw LoadError(hf.path + ": heavily_compressed_attention rate must differ from 4");
  c.compress_ratios.clear();
  for (auto t : hf.get("layer_types").get_array()) {
    const std::string_view kind = t.get_string();
    if (kind == "sliding_attention") c.compress_ratios.push_back(0);
    else if (kind == "compressed_sparse_attention") c.compress_ratios.push_back(4);
    else if (kind == "heavily_compressed_attention") c.compress_ratios.push_back(static_cast<int>(hca));
    else throw LoadError(hf.path + ": unknown layer type '" + std::string(kind) + "'");
  }
  c.n_hash_layers = 0;
  bool learned_seen = false;
  for (auto t : hf.get("mlp_layer_types").get_array()) {
    const std::string_view kind = t.get_string();
    if (kind == "hash_moe") {
      if (learned_seen) throw LoadError(hf.path + ": mlp_layer_types: hash_moe layers must come first");
      ++c.n_hash_layers;
    } else if (kind == "moe") {
      learned_seen = true;
    } else {
      throw LoadError(hf.path + ": unknown mlp layer type '" + std::string(kind) + "'");
    }
  }
}

}  // namespace

ModelConfig config_from_hf(const std::string& dir) {
  HfConfig hf;
  hf.path = dir + "/config.json";
  const std::string text = read_file(hf.path);
  if (hf.parser.parse(text).get(hf.root)) throw LoadError(hf.path + ": not valid JSON");
  ModelConfig c;
  c.name = "hf-" + dir.substr(dir.find_last_of('/') + 1);
  c.n_layer = static_cast<int>(hf.integer("num_hidden_layers"));
  c.n_embd = static_cast<int>(hf.integer("hidden_size"));
  c.n_vocab = static_cast<int>(hf.integer("vocab_size"));
  c.n_head = static_cast<int>(hf.integer("num_attention_heads"));
  c.n_head_kv = static_cast<int>(hf.integer("num_key_value_heads"));
  c.head_dim = c.value_dim = static_cast<int>(hf.integer("head_dim"));
  c.rope_dim = static_cast<int>(hf.integer("qk_rope_head_dim"));
  c.q_lora_rank = static_cast<int>(hf.integer("q_lora_rank"));
  c.o_lora_rank = static_cast<int>(hf.integer("o_lora_rank"));
  c.o_groups = static_cast<int>(hf.integer("o_groups"));
  c.n_expert = static_cast<int>(hf.integer("n_routed_experts"));
  c.n_expert_used = static_cast<int>(hf.integer("num_experts_per_tok"));
  c.expert_ffn = static_cast<int>(hf.integer("moe_intermediate_size"));
  c.n_expert_shared = static_cast<int>(hf.integer("n_shared_experts"));
  if (c.n_expert_shared != 1)  // HF builds exactly one shared MLP of moe_intermediate_size
    throw LoadError(hf.path + ": n_shared_experts " + std::to_string(c.n_expert_shared) + " != 1");
  c.sliding_window = static_cast<int>(hf.integer("sliding_window"));
  c.indexer_heads = static_cast<int>(hf.integer("index_n_heads"));
  c.indexer_dim = static_cast<int>(hf.integer("index_head_dim"));
  c.indexer_top_k = static_cast<int>(hf.integer("index_topk"));
  c.hc_count = static_cast<int>(hf.integer("hc_mult"));
  c.hc_sinkhorn_iters = static_cast<int>(hf.integer("hc_sinkhorn_iters"));
  c.hc_eps = static_cast<float>(hf.number("hc_eps"));
  c.rms_eps = static_cast<float>(hf.number("rms_norm_eps"));
  c.expert_weights_scale = static_cast<float>(hf.number("routed_scaling_factor"));
  bool norm = true;
  if (hf.has("norm_topk_prob") && hf.get("norm_topk_prob").get_bool().get(norm))
    throw LoadError(hf.path + ": norm_topk_prob is not a boolean");
  c.expert_weights_norm = norm;
  c.context_length = static_cast<int>(hf.integer("max_position_embeddings"));
  std::string_view scoring;
  if (!hf.get("scoring_func").get_string().get(scoring) && scoring != "sqrtsoftplus")
    throw LoadError(hf.path + ": scoring_func '" + std::string(scoring) + "' is not sqrtsoftplus");
  read_rope(hf, c);
  read_layer_kinds(hf, c);
  c.swiglu_clamp.assign(c.n_layer, static_cast<float>(hf.number("swiglu_limit")));
  validate_config(c);
  return c;
}

namespace {

enum class Take { kWhole, kGateHalf, kUpHalf };

struct Source {
  std::string name;
  Take take = Take::kWhole;
};

// HF parameter that holds a GGUF tensor.
Source hf_source(const std::string& gguf_name) {
  static const std::map<std::string, std::string> kGlobal = {
      {"token_embd.weight", "model.embed_tokens.weight"}, {"output.weight", "lm_head.weight"},
      {"output_norm.weight", "model.norm.weight"}, {"output_hc_fn.weight", "model.hc_head.hc_fn"},
      {"output_hc_base.weight", "model.hc_head.hc_base"}, {"output_hc_scale.weight", "model.hc_head.hc_scale"},
  };
  static const std::map<std::string, std::string> kLayer = {
      {"hc_attn_fn.weight", "attn_hc.fn"}, {"hc_attn_base.weight", "attn_hc.base"}, {"hc_attn_scale.weight", "attn_hc.scale"},
      {"hc_ffn_fn.weight", "ffn_hc.fn"}, {"hc_ffn_base.weight", "ffn_hc.base"}, {"hc_ffn_scale.weight", "ffn_hc.scale"},
      {"attn_norm.weight", "input_layernorm.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn_q_a.weight", "self_attn.q_a_proj.weight"}, {"attn_q_a_norm.weight", "self_attn.q_a_norm.weight"},
      {"attn_q_b.weight", "self_attn.q_b_proj.weight"}, {"attn_kv.weight", "self_attn.kv_proj.weight"},
      {"attn_kv_a_norm.weight", "self_attn.kv_norm.weight"}, {"attn_sinks.weight", "self_attn.sinks"},
      {"attn_output_a.weight", "self_attn.o_a_proj.weight"}, {"attn_output_b.weight", "self_attn.o_b_proj.weight"},
      {"attn_compressor_kv.weight", "self_attn.compressor.kv_proj.weight"},
      {"attn_compressor_gate.weight", "self_attn.compressor.gate_proj.weight"},
      {"attn_compressor_ape.weight", "self_attn.compressor.position_bias"},
      {"attn_compressor_norm.weight", "self_attn.compressor.kv_norm.weight"},
      {"indexer_compressor_kv.weight", "self_attn.compressor.indexer.kv_proj.weight"},
      {"indexer_compressor_gate.weight", "self_attn.compressor.indexer.gate_proj.weight"},
      {"indexer_compressor_ape.weight", "self_attn.compressor.indexer.position_bias"},
      {"indexer_compressor_norm.weight", "self_attn.compressor.indexer.kv_norm.weight"},
      {"indexer.attn_q_b.weight", "self_attn.compressor.indexer.q_b_proj.weight"},
      {"indexer.proj.weight", "self_attn.compressor.indexer.scorer.weights_proj.weight"},
      {"ffn_gate_inp.weight", "mlp.gate.weight"}, {"exp_probs_b.bias", "mlp.gate.e_score_correction_bias"},
      {"ffn_gate_tid2eid.weight", "mlp.gate.tid2eid"}, {"ffn_down_exps.weight", "mlp.experts.down_proj"},
      {"ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight"},
      {"ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight"},
      {"ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight"},
  };
  if (auto it = kGlobal.find(gguf_name); it != kGlobal.end()) return {it->second};
  const size_t dot = gguf_name.find('.', 4);  // "blk.N."
  const std::string prefix = "model.layers." + gguf_name.substr(4, dot - 4) + ".";
  const std::string suffix = gguf_name.substr(dot + 1);
  if (suffix == "ffn_gate_exps.weight") return {prefix + "mlp.experts.gate_up_proj", Take::kGateHalf};
  if (suffix == "ffn_up_exps.weight") return {prefix + "mlp.experts.gate_up_proj", Take::kUpHalf};
  return {prefix + kLayer.at(suffix)};
}

// The values of a GGUF tensor (row-major over our dims) taken from its HF source.
std::vector<float> gather_values(const TensorSpec& spec, const Source& src, const SafetensorsTensor& t) {
  std::vector<uint64_t> reversed(spec.dims.rbegin(), spec.dims.rend());
  if (src.take == Take::kWhole) {
    if (t.shape != reversed)
      throw LoadError("HF tensor '" + src.name + "' has an unexpected shape for '" + spec.name + "'");
    return t.to_f32(src.name);
  }
  // gate_up_proj [E, 2F, H] -> [E, F, H] half
  const uint64_t E = spec.dims[2], F = spec.dims[1], H = spec.dims[0];
  if (t.shape != std::vector<uint64_t>{E, 2 * F, H})
    throw LoadError("HF tensor '" + src.name + "' has an unexpected shape for '" + spec.name + "'");
  const std::vector<float> all = t.to_f32(src.name);
  std::vector<float> out(E * F * H);
  const uint64_t first = src.take == Take::kGateHalf ? 0 : F;
  for (uint64_t e = 0; e < E; ++e)
    std::copy_n(&all[(e * 2 * F + first) * H], F * H, &out[e * F * H]);
  return out;
}

void write_tensor_data(const TensorSpec& spec, GgmlType type, const Source& src, const SafetensorsTensor& t,
                       int n_expert, GgufWriter& w) {
  if (type == GgmlType::I32) {
    if (t.shape != std::vector<uint64_t>(spec.dims.rbegin(), spec.dims.rend()))
      throw LoadError("HF tensor '" + src.name + "' has an unexpected shape for '" + spec.name + "'");
    const std::vector<int64_t> ids = t.to_i64(src.name);
    for (int64_t id : ids)
      if (id < 0 || id >= static_cast<int64_t>(n_expert))
        throw LoadError("HF tensor '" + src.name + "': expert ids outside [0, " + std::to_string(n_expert) + ")");
    std::vector<int32_t> out(ids.begin(), ids.end());
    w.append_tensor_data({reinterpret_cast<const uint8_t*>(out.data()), out.size() * 4});
    return;
  }
  const std::vector<float> values = gather_values(spec, src, t);
  const uint64_t n = spec.dims[0], rows = values.size() / n, row_bytes = *ggml_row_bytes(type, n);
  std::vector<uint8_t> bytes(rows * row_bytes);
  for (uint64_t r = 0; r < rows; ++r) quantize_row(type, &values[r * n], &bytes[r * row_bytes], static_cast<int64_t>(n));
  w.append_tensor_data(bytes);
}

}  // namespace

void convert_hf_checkpoint(const std::string& dir, const std::string& out_path, GgmlType matrix_type) {
  if (matrix_type != GgmlType::F32 && matrix_type != GgmlType::F16)
    throw LoadError("convert-hf stores matrices as F32 or F16");
  const ModelConfig c = config_from_hf(dir);
  const auto st = SafetensorsFile::open(dir + "/model.safetensors");
  std::vector<TensorSpec> specs;
  std::vector<Source> sources;
  for (const TensorSpec& spec : model_tensor_specs(c)) {
    Source src = hf_source(spec.name);
    if (!st->tensors().count(src.name)) {
      if (spec.optional) continue;
      throw LoadError(dir + "/model.safetensors: missing tensor '" + src.name + "' (for " + spec.name + ")");
    }
    specs.push_back(spec);
    sources.push_back(std::move(src));
  }
  GgufWriter w(out_path);
  write_config_metadata(c, w);
  std::vector<GgmlType> types;
  for (const auto& spec : specs) {
    const GgmlType t = tensor_type_for(spec, QuantScheme::kF32) == GgmlType::F32 && spec.role != TensorRole::kVectorF32
                           ? matrix_type
                           : tensor_type_for(spec, QuantScheme::kF32);
    types.push_back(t);
    w.add_tensor(spec.name, t, spec.dims);
  }
  w.write_header();
  for (size_t i = 0; i < specs.size(); ++i) write_tensor_data(specs[i], types[i], sources[i], st->at(sources[i].name), c.n_expert, w);
  w.finish();
}

}  // namespace ds4
