// Binding of GGUF tensors to Weights with name, type and shape checks (see weights.h).
#include "engine/weights.h"

#include <map>
#include <set>

#include "engine/gguf.h"
#include "engine/load_error.h"
#include "engine/model_layout.h"

namespace ds4 {
namespace {

std::string dims_text(const std::vector<uint64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// The member of LayerWeights that a block tensor name (without its "blk.N." / "mtp.0." prefix)
// binds to, or null.
TensorView* layer_slot(LayerWeights& lw, const std::string& suffix) {
  static const std::map<std::string, TensorView LayerWeights::*> kLayerSlots = {
      {"hc_attn_fn.weight", &LayerWeights::hc_attn_fn}, {"hc_attn_scale.weight", &LayerWeights::hc_attn_scale},
      {"hc_attn_base.weight", &LayerWeights::hc_attn_base}, {"attn_norm.weight", &LayerWeights::attn_norm},
      {"attn_q_a.weight", &LayerWeights::attn_q_a}, {"attn_q_a_norm.weight", &LayerWeights::attn_q_a_norm},
      {"attn_q_b.weight", &LayerWeights::attn_q_b}, {"attn_kv.weight", &LayerWeights::attn_kv},
      {"attn_kv_a_norm.weight", &LayerWeights::attn_kv_a_norm}, {"attn_sinks.weight", &LayerWeights::attn_sinks},
      {"attn_output_a.weight", &LayerWeights::attn_output_a}, {"attn_output_b.weight", &LayerWeights::attn_output_b},
      {"attn_compressor_ape.weight", &LayerWeights::attn_compressor_ape},
      {"attn_compressor_kv.weight", &LayerWeights::attn_compressor_kv},
      {"attn_compressor_gate.weight", &LayerWeights::attn_compressor_gate},
      {"attn_compressor_norm.weight", &LayerWeights::attn_compressor_norm},
      {"indexer.attn_q_b.weight", &LayerWeights::indexer_attn_q_b}, {"indexer.proj.weight", &LayerWeights::indexer_proj},
      {"indexer_compressor_ape.weight", &LayerWeights::indexer_compressor_ape},
      {"indexer_compressor_kv.weight", &LayerWeights::indexer_compressor_kv},
      {"indexer_compressor_gate.weight", &LayerWeights::indexer_compressor_gate},
      {"indexer_compressor_norm.weight", &LayerWeights::indexer_compressor_norm},
      {"hc_ffn_fn.weight", &LayerWeights::hc_ffn_fn}, {"hc_ffn_scale.weight", &LayerWeights::hc_ffn_scale},
      {"hc_ffn_base.weight", &LayerWeights::hc_ffn_base}, {"ffn_norm.weight", &LayerWeights::ffn_norm},
      {"ffn_gate_inp.weight", &LayerWeights::ffn_gate_inp}, {"exp_probs_b.bias", &LayerWeights::exp_probs_b},
      {"ffn_gate_tid2eid.weight", &LayerWeights::ffn_gate_tid2eid},
      {"ffn_gate_exps.weight", &LayerWeights::ffn_gate_exps}, {"ffn_up_exps.weight", &LayerWeights::ffn_up_exps},
      {"ffn_down_exps.weight", &LayerWeights::ffn_down_exps},
      {"ffn_gate_shexp.weight", &LayerWeights::ffn_gate_shexp}, {"ffn_up_shexp.weight", &LayerWeights::ffn_up_shexp},
      {"ffn_down_shexp.weight", &LayerWeights::ffn_down_shexp},
  };
  const auto it = kLayerSlots.find(suffix);
  return it == kLayerSlots.end() ? nullptr : &(lw.*(it->second));
}

// The member of Weights that a spec binds to.
TensorView* slot_for(Weights& w, const TensorSpec& spec) {
  static const std::map<std::string, TensorView Weights::*> kGlobalSlots = {
      {"token_embd.weight", &Weights::token_embd}, {"output.weight", &Weights::output},
      {"output_norm.weight", &Weights::output_norm}, {"output_hc_fn.weight", &Weights::output_hc_fn},
      {"output_hc_base.weight", &Weights::output_hc_base}, {"output_hc_scale.weight", &Weights::output_hc_scale},
  };
  if (spec.layer < 0) {
    const auto it = kGlobalSlots.find(spec.name);
    return it == kGlobalSlots.end() ? nullptr : &(w.*(it->second));
  }
  const std::string suffix = spec.name.substr(spec.name.find('.', 4) + 1);  // after "blk.N."
  return layer_slot(w.layers[spec.layer], suffix);
}

TensorView* mtp_slot_for(MtpWeights& w, const TensorSpec& spec) {
  static const std::map<std::string, TensorView MtpWeights::*> kHeadSlots = {
      {"hc_head_base.weight", &MtpWeights::hc_head_base}, {"hc_head_fn.weight", &MtpWeights::hc_head_fn},
      {"hc_head_scale.weight", &MtpWeights::hc_head_scale}, {"e_proj.weight", &MtpWeights::e_proj},
      {"h_proj.weight", &MtpWeights::h_proj}, {"enorm.weight", &MtpWeights::enorm},
      {"hnorm.weight", &MtpWeights::hnorm}, {"norm.weight", &MtpWeights::norm},
  };
  const std::string suffix = spec.name.substr(std::string("mtp.0.").size());
  const auto it = kHeadSlots.find(suffix);
  return it != kHeadSlots.end() ? &(w.*(it->second)) : layer_slot(w.block, suffix);
}

// Checks one tensor against its spec; returns an empty string or the problem.
std::string check_tensor(const GgufTensorInfo& info, const TensorSpec& spec) {
  if (info.dims != spec.dims)
    return "tensor '" + spec.name + "': expected dims " + dims_text(spec.dims) + ", found " + dims_text(info.dims);
  if (!tensor_type_allowed(spec, info.type))
    return "tensor '" + spec.name + "': type " + std::string(ggml_type_name(info.type)) + " not allowed here (published type " +
           std::string(ggml_type_name(tensor_type_for(spec, QuantScheme::kQ2))) + ")";
  return {};
}

TensorView make_view(const GgufTensorInfo& info) {
  TensorView v;
  v.data = info.data;
  v.type = info.type;
  v.ne0 = info.dims[0];
  v.ne1 = info.dims.size() > 1 ? info.dims[1] : 1;
  v.ne2 = info.dims.size() > 2 ? info.dims[2] : 1;
  v.row_bytes = *ggml_row_bytes(info.type, v.ne0);
  return v;
}

// Binds every spec through slot(spec); returns the problems found and fills `used`.
template <typename SlotFn>
std::vector<std::string> bind_specs(const GgufFile& file, const std::vector<TensorSpec>& specs, SlotFn slot,
                                    std::set<std::string>& used) {
  std::vector<std::string> problems;
  for (const TensorSpec& spec : specs) {
    const GgufTensorInfo* info = file.find_tensor(spec.name);
    if (!info) {
      if (!spec.optional) problems.push_back("missing tensor '" + spec.name + "' " + dims_text(spec.dims));
      continue;
    }
    used.insert(spec.name);
    if (std::string p = check_tensor(*info, spec); !p.empty()) {
      problems.push_back(p);
      continue;
    }
    *slot(spec) = make_view(*info);
  }
  return problems;
}

void throw_if_problems(const GgufFile& file, const std::vector<std::string>& problems) {
  if (!problems.empty()) {
    std::string msg = file.path() + ": " + std::to_string(problems.size()) + " tensor problem(s):";
    const size_t shown = std::min<size_t>(problems.size(), 20);
    for (size_t i = 0; i < shown; ++i) msg += "\n  " + problems[i];
    if (shown < problems.size()) msg += "\n  ... and " + std::to_string(problems.size() - shown) + " more";
    throw LoadError(msg);
  }
}

// Hash tables must name valid experts (they index weights directly).
void check_hash_tables(const Weights& w, const ModelConfig& c, std::vector<std::string>& problems) {
  for (int il = 0; il < c.n_layer; ++il) {
    const TensorView& t = w.layers[il].ffn_gate_tid2eid;
    if (!t.present()) continue;
    const uint64_t n = t.ne0 * t.ne1;
    for (uint64_t i = 0; i < n; ++i)
      if (t.i32()[i] < 0 || t.i32()[i] >= c.n_expert) {
        problems.push_back("tensor 'blk." + std::to_string(il) + ".ffn_gate_tid2eid.weight': entry " + std::to_string(i) +
                           " = " + std::to_string(t.i32()[i]) + " is not an expert id < " + std::to_string(c.n_expert));
        break;
      }
  }
}

}  // namespace

TensorView* weight_slot(Weights& w, const TensorSpec& spec) {
  if (spec.layer == kMtpLayer || spec.layer >= static_cast<int>(w.layers.size())) return nullptr;
  return slot_for(w, spec);
}

Weights bind_weights(const GgufFile& file, const ModelConfig& config) {
  Weights w;
  w.layers.resize(config.n_layer);
  std::set<std::string> used;
  auto problems = bind_specs(file, model_tensor_specs(config), [&](const TensorSpec& s) { return slot_for(w, s); }, used);
  if (problems.empty()) check_hash_tables(w, config, problems);
  throw_if_problems(file, problems);
  for (const auto& t : file.tensors())
    if (!used.count(t.name)) w.unused_tensors.push_back(t.name);
  return w;
}

TensorView* mtp_weight_slot(MtpWeights& w, const TensorSpec& spec) {
  return spec.layer == kMtpLayer ? mtp_slot_for(w, spec) : nullptr;
}

MtpWeights bind_mtp_weights(const GgufFile& file, const ModelConfig& config) {
  MtpWeights w;
  std::set<std::string> used;
  throw_if_problems(file, bind_specs(file, mtp_tensor_specs(config), [&](const TensorSpec& s) { return mtp_slot_for(w, s); }, used));
  return w;
}

}  // namespace ds4
