// ModelConfig presets, validation, and the mapping to/from `deepseek4.*` GGUF metadata.
// The scalar keys are one table (kScalarKeys) shared by reading, writing and comparison, so a
// key is named in exactly one place.
#include "engine/model_config.h"

#include <cmath>
#include <sstream>
#include <variant>

#include "engine/gguf.h"

namespace ds4 {
namespace {

constexpr const char* kArch = "deepseek4";

enum class KeyKind { kU32, kF32, kBool };
struct ScalarKey {
  const char* key;  // without the "deepseek4." prefix
  KeyKind kind;
  std::variant<int ModelConfig::*, float ModelConfig::*, bool ModelConfig::*> field;
  bool required;
};

const ScalarKey kScalarKeys[] = {
    {"block_count", KeyKind::kU32, &ModelConfig::n_layer, true},
    {"embedding_length", KeyKind::kU32, &ModelConfig::n_embd, true},
    {"vocab_size", KeyKind::kU32, &ModelConfig::n_vocab, true},
    {"context_length", KeyKind::kU32, &ModelConfig::context_length, false},
    {"attention.head_count", KeyKind::kU32, &ModelConfig::n_head, true},
    {"attention.head_count_kv", KeyKind::kU32, &ModelConfig::n_head_kv, true},
    {"attention.key_length", KeyKind::kU32, &ModelConfig::head_dim, true},
    {"attention.value_length", KeyKind::kU32, &ModelConfig::value_dim, true},
    {"rope.dimension_count", KeyKind::kU32, &ModelConfig::rope_dim, true},
    {"attention.q_lora_rank", KeyKind::kU32, &ModelConfig::q_lora_rank, true},
    {"attention.output_lora_rank", KeyKind::kU32, &ModelConfig::o_lora_rank, true},
    {"attention.output_group_count", KeyKind::kU32, &ModelConfig::o_groups, true},
    {"expert_count", KeyKind::kU32, &ModelConfig::n_expert, true},
    {"expert_used_count", KeyKind::kU32, &ModelConfig::n_expert_used, true},
    {"expert_feed_forward_length", KeyKind::kU32, &ModelConfig::expert_ffn, true},
    {"expert_shared_count", KeyKind::kU32, &ModelConfig::n_expert_shared, true},
    {"hash_layer_count", KeyKind::kU32, &ModelConfig::n_hash_layers, true},
    {"attention.sliding_window", KeyKind::kU32, &ModelConfig::sliding_window, true},
    {"attention.indexer.head_count", KeyKind::kU32, &ModelConfig::indexer_heads, true},
    {"attention.indexer.key_length", KeyKind::kU32, &ModelConfig::indexer_dim, true},
    {"attention.indexer.top_k", KeyKind::kU32, &ModelConfig::indexer_top_k, true},
    {"hyper_connection.count", KeyKind::kU32, &ModelConfig::hc_count, true},
    {"hyper_connection.sinkhorn_iterations", KeyKind::kU32, &ModelConfig::hc_sinkhorn_iters, true},
    {"hyper_connection.epsilon", KeyKind::kF32, &ModelConfig::hc_eps, true},
    {"attention.layer_norm_rms_epsilon", KeyKind::kF32, &ModelConfig::rms_eps, true},
    {"rope.freq_base", KeyKind::kF32, &ModelConfig::rope_base, true},
    {"attention.compress_rope_freq_base", KeyKind::kF32, &ModelConfig::compress_rope_base, true},
    {"rope.scaling.factor", KeyKind::kF32, &ModelConfig::yarn_factor, true},
    {"rope.scaling.original_context_length", KeyKind::kU32, &ModelConfig::yarn_orig_ctx, true},
    {"rope.scaling.yarn_beta_fast", KeyKind::kF32, &ModelConfig::yarn_beta_fast, true},
    {"rope.scaling.yarn_beta_slow", KeyKind::kF32, &ModelConfig::yarn_beta_slow, true},
    {"expert_weights_scale", KeyKind::kF32, &ModelConfig::expert_weights_scale, true},
    {"expert_weights_norm", KeyKind::kBool, &ModelConfig::expert_weights_norm, true},
};

std::string full_key(const char* key) { return std::string(kArch) + "." + key; }

std::string field_text(const ModelConfig& c, const ScalarKey& k) {
  std::ostringstream os;
  std::visit([&](auto member) { os << c.*member; }, k.field);
  return os.str();
}

void read_scalar(const GgufValue& v, const std::string& key, ModelConfig& c, const ScalarKey& k) {
  std::visit(
      [&](auto member) {
        using T = std::remove_cvref_t<decltype(c.*member)>;
        if constexpr (std::is_same_v<T, int>) {
          const int64_t x = v.as_int(key);
          if (x < 0 || x > (1ll << 31) - 1) throw LoadError(key + ": value " + std::to_string(x) + " out of range");
          c.*member = static_cast<int>(x);
        } else if constexpr (std::is_same_v<T, float>) {
          c.*member = static_cast<float>(v.as_double(key));
        } else {
          c.*member = v.as_bool(key);
        }
      },
      k.field);
}

std::vector<int> default_flash_ratios(int n_layer) {
  std::vector<int> r(n_layer);
  for (int il = 0; il < n_layer; ++il) r[il] = il < 2 ? 0 : (il % 2 == 0 ? 4 : 128);
  return r;
}

bool close_rel(double a, double b) { return std::fabs(a - b) <= 1e-6 * std::max(std::fabs(a), std::fabs(b)); }

// The first n_layer entries of a per-layer array key (the file may carry more, e.g. for MTP).
const std::vector<GgufValue>& layer_array(const GgufFile& file, const std::string& key, int n_layer) {
  const GgufValue* v = file.find(key);
  if (!v) throw LoadError("missing metadata key " + key);
  const auto& items = v->as_array(key).items;
  if (items.size() < static_cast<size_t>(n_layer))
    throw LoadError(key + ": " + std::to_string(items.size()) + " entries, need at least block_count = " +
                    std::to_string(n_layer));
  return items;
}

void read_layer_arrays(const GgufFile& file, ModelConfig& c) {
  const std::string rk = full_key("attention.compress_ratios"), ck = full_key("swiglu_clamp_exp");
  const auto& ratios = layer_array(file, rk, c.n_layer);
  const auto& clamps = layer_array(file, ck, c.n_layer);
  c.compress_ratios.clear();
  c.swiglu_clamp.clear();
  for (int il = 0; il < c.n_layer; ++il) {
    c.compress_ratios.push_back(static_cast<int>(ratios[il].as_int(rk)));
    c.swiglu_clamp.push_back(static_cast<float>(clamps[il].as_double(ck)));
  }
}

}  // namespace

AttentionKind ModelConfig::attention_kind(int layer) const {
  const int r = compress_ratio(layer);
  if (r == 0) return AttentionKind::kSliding;
  return r == 4 ? AttentionKind::kCompressedSparse : AttentionKind::kHeavilyCompressed;
}

ModelConfig preset_flash() {
  ModelConfig c;
  c.compress_ratios = default_flash_ratios(c.n_layer);
  c.swiglu_clamp.assign(c.n_layer, 10.0f);
  return c;
}

ModelConfig preset_tiny() {
  // All layer kinds in six layers: raw-window (0,1), CSA (2,4), HCA (3,5); hash MoE on 0-2.
  // Widths are the smallest the quant block sizes allow (256 for the routed experts).
  ModelConfig c;
  c.name = "ds4-tiny";
  c.n_layer = 6;
  c.n_embd = 256;
  c.n_head = 4;
  c.head_dim = 128;
  c.value_dim = 128;
  c.rope_dim = 64;
  c.q_lora_rank = 128;
  c.o_lora_rank = 64;
  c.o_groups = 2;
  c.n_expert = 16;
  c.n_expert_used = 4;
  c.expert_ffn = 256;
  c.sliding_window = 32;
  c.indexer_heads = 16;
  c.indexer_dim = 128;
  c.indexer_top_k = 8;
  c.context_length = 8192;
  c.compress_ratios = {0, 0, 4, 128, 4, 128};
  c.swiglu_clamp.assign(c.n_layer, 10.0f);
  return c;
}

ModelConfig preset_small() {
  // Real per-head widths, fewer layers and experts: a mid-size model for benchmarks.
  ModelConfig c;
  c.name = "ds4-small";
  c.n_layer = 4;
  c.n_embd = 1024;
  c.n_head = 16;
  c.q_lora_rank = 256;
  c.o_lora_rank = 256;
  c.o_groups = 4;
  c.n_expert = 32;
  c.expert_ffn = 512;
  c.indexer_heads = 16;
  c.indexer_top_k = 64;
  c.context_length = 65536;
  c.compress_ratios = {0, 4, 128, 4};
  c.swiglu_clamp.assign(c.n_layer, 10.0f);
  return c;
}

ModelConfig preset_by_name(const std::string& name) {
  if (name == "flash" || name == "full") return preset_flash();
  if (name == "tiny") return preset_tiny();
  if (name == "small") return preset_small();
  throw LoadError("unknown preset '" + name + "' (expected tiny, small or full)");
}

std::vector<std::string> config_problems(const ModelConfig& c) {
  std::vector<std::string> p;
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) p.push_back(what);
  };
  for (const auto& k : kScalarKeys) {
    if (const auto* m = std::get_if<int ModelConfig::*>(&k.field))
      need(c.**m > 0 || std::string(k.key) == "hash_layer_count", full_key(k.key) + " must be positive");
  }
  need(c.n_head_kv == 1, "attention.head_count_kv must be 1 (one shared K=V row)");
  need(c.value_dim == c.head_dim, "attention.value_length must equal key_length (K and V are one row)");
  need(c.rope_dim % 2 == 0 && c.rope_dim < c.head_dim, "rope.dimension_count must be even and < key_length");
  need(c.rope_dim <= c.indexer_dim, "rope.dimension_count must be <= indexer key_length");
  need(c.o_groups > 0 && c.n_head % c.o_groups == 0, "attention.head_count must be a multiple of output_group_count");
  need(c.n_expert_used <= c.n_expert, "expert_used_count must be <= expert_count");
  need(c.n_hash_layers <= c.n_layer, "hash_layer_count must be <= block_count");
  // The range is checked before hc_mix_dim() is used: (2 + n) * n overflows int for a hostile n.
  need(c.hc_count >= 1 && c.hc_count <= 16, "hyper_connection.count must be 1..16");
  need(c.rms_eps > 0 && c.hc_eps > 0, "epsilons must be positive");
  need(c.compress_ratios.size() == static_cast<size_t>(c.n_layer), "attention.compress_ratios needs block_count entries");
  need(c.swiglu_clamp.size() == static_cast<size_t>(c.n_layer), "swiglu_clamp_exp needs block_count entries");
  for (size_t il = 0; il < c.compress_ratios.size(); ++il)
    need(c.compress_ratios[il] == 0 || c.compress_ratios[il] >= 2,
         "attention.compress_ratios[" + std::to_string(il) + "] = " + std::to_string(c.compress_ratios[il]) +
             " (must be 0 or >= 2)");
  for (size_t il = 0; il < c.swiglu_clamp.size(); ++il)
    need(c.swiglu_clamp[il] > 0, "swiglu_clamp_exp[" + std::to_string(il) + "] must be positive");
  return p;
}

void validate_config(const ModelConfig& c) {
  const auto problems = config_problems(c);
  if (problems.empty()) return;
  std::string msg = "invalid model config:";
  for (const auto& s : problems) msg += "\n  " + s;
  throw LoadError(msg);
}

std::vector<std::string> differences_from_flash(const ModelConfig& c) {
  const ModelConfig f = preset_flash();
  std::vector<std::string> d;
  for (const auto& k : kScalarKeys) {
    if (std::string(k.key) == "context_length") continue;  // summary only
    const std::string a = field_text(f, k), b = field_text(c, k);
    const bool same = k.kind == KeyKind::kF32 ? close_rel(std::stod(a), std::stod(b)) : a == b;
    if (!same) d.push_back(full_key(k.key) + ": expected " + a + ", found " + b);
  }
  if (c.compress_ratios != f.compress_ratios) d.push_back(full_key("attention.compress_ratios") + ": differs from the published pattern");
  if (c.swiglu_clamp != f.swiglu_clamp) d.push_back(full_key("swiglu_clamp_exp") + ": expected all 10");
  return d;
}

ModelConfig config_from_gguf(const GgufFile& file) {
  if (const GgufValue* arch = file.find("general.architecture")) {
    const auto& a = arch->as_string("general.architecture");
    if (a != kArch) throw LoadError(file.path() + ": general.architecture is '" + a + "', expected 'deepseek4'");
  }
  ModelConfig c;
  if (const GgufValue* n = file.find("general.name")) c.name = n->as_string("general.name");
  for (const auto& k : kScalarKeys) {
    const std::string key = full_key(k.key);
    const GgufValue* v = file.find(key);
    if (!v) {
      if (k.required) throw LoadError(file.path() + ": missing metadata key " + key);
      continue;
    }
    read_scalar(*v, key, c, k);
  }
  for (const char* k : {"expert_group_count", "expert_group_used_count"}) {
    const GgufValue* v = file.find(full_key(k));
    if (v && v->as_int(full_key(k)) != 0)
      throw LoadError(file.path() + ": " + full_key(k) + " must be 0 (group-limited routing is not part of this model)");
  }
  read_layer_arrays(file, c);
  try {
    validate_config(c);
  } catch (const LoadError& e) {
    throw LoadError(file.path() + ": " + e.what());
  }
  return c;
}

void write_config_metadata(const ModelConfig& c, GgufWriter& w) {
  w.add_metadata("general.architecture", GgufValue::string(kArch));
  w.add_metadata("general.name", GgufValue::string(c.name));
  for (const auto& k : kScalarKeys) {
    std::visit(
        [&](auto member) {
          using T = std::remove_cvref_t<decltype(c.*member)>;
          if constexpr (std::is_same_v<T, int>) w.add_metadata(full_key(k.key), GgufValue::u32(static_cast<uint32_t>(c.*member)));
          else if constexpr (std::is_same_v<T, float>) w.add_metadata(full_key(k.key), GgufValue::f32(c.*member));
          else w.add_metadata(full_key(k.key), GgufValue::boolean(c.*member));
        },
        k.field);
  }
  w.add_metadata(full_key("expert_group_count"), GgufValue::u32(0));
  w.add_metadata(full_key("expert_group_used_count"), GgufValue::u32(0));
  std::vector<GgufValue> ratios, clamps;
  for (int r : c.compress_ratios) ratios.push_back(GgufValue::u32(static_cast<uint32_t>(r)));
  for (float x : c.swiglu_clamp) clamps.push_back(GgufValue::f32(x));
  w.add_metadata(full_key("attention.compress_ratios"), GgufValue::array(GgufValueType::UINT32, std::move(ratios)));
  w.add_metadata(full_key("swiglu_clamp_exp"), GgufValue::array(GgufValueType::FLOAT32, std::move(clamps)));
}

std::string describe_config(const ModelConfig& c) {
  std::ostringstream os;
  os << "name: " << c.name << "\n";
  for (const auto& k : kScalarKeys) os << "  " << k.key << " = " << field_text(c, k) << "\n";
  os << "  attention.compress_ratios = [";
  for (size_t i = 0; i < c.compress_ratios.size(); ++i) os << (i ? "," : "") << c.compress_ratios[i];
  os << "]\n  swiglu_clamp_exp = [";
  for (size_t i = 0; i < c.swiglu_clamp.size(); ++i) os << (i ? "," : "") << c.swiglu_clamp[i];
  os << "]\n";
  return os.str();
}

}  // namespace ds4
