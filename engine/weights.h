// Weights: typed, shape-checked views of every tensor of the model, bound by name from a GGUF
// (MODEL.md 4.3). A missing, mistyped or misshapen tensor is a LoadError naming the tensor, the
// expected and the found value. Views point into the file mapping; Weights does not own memory.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/model_config.h"
#include "kernels/cpu_ops.h"
#include "kernels/ggml_type.h"

namespace ds4 {

class GgufFile;
struct TensorSpec;

// A 1-3 dimensional tensor in a GGUF mapping. Rows are ne0 values; a 3-D tensor is ne2 stacked
// [ne0, ne1] matrices (one per expert).
struct TensorView {
  const uint8_t* data = nullptr;  // null for an absent optional tensor
  GgmlType type = GgmlType::F32;
  uint64_t ne0 = 0, ne1 = 1, ne2 = 1;
  uint64_t row_bytes = 0;

  bool present() const { return data != nullptr; }
  const uint8_t* row(uint64_t i) const { return data + i * row_bytes; }
  // Row i of matrix e of a 3-D tensor.
  const uint8_t* row(uint64_t e, uint64_t i) const { return data + (e * ne1 + i) * row_bytes; }
  const float* f32() const { return reinterpret_cast<const float*>(data); }  // type F32 only
  const int32_t* i32() const { return reinterpret_cast<const int32_t*>(data); }  // type I32 only
  // The tensor as a matrix of ne1 * ne2 rows (all experts stacked for a 3-D tensor).
  MatView mat() const { return {data, type, int64_t(ne0), int64_t(ne1 * ne2), row_bytes}; }
  // Matrix e of a 3-D tensor (one expert).
  MatView expert(int64_t e) const { return mat().rows(e * int64_t(ne1), int64_t(ne1)); }
};

struct LayerWeights {
  TensorView hc_attn_fn, hc_attn_scale, hc_attn_base;
  TensorView attn_norm, attn_q_a, attn_q_a_norm, attn_q_b, attn_kv, attn_kv_a_norm, attn_sinks;
  TensorView attn_output_a, attn_output_b;
  // compressed layers (ratio != 0)
  TensorView attn_compressor_ape, attn_compressor_kv, attn_compressor_gate, attn_compressor_norm;
  // CSA layers (ratio 4)
  TensorView indexer_attn_q_b, indexer_proj;
  TensorView indexer_compressor_ape, indexer_compressor_kv, indexer_compressor_gate, indexer_compressor_norm;
  TensorView hc_ffn_fn, hc_ffn_scale, hc_ffn_base;
  TensorView ffn_norm, ffn_gate_inp, exp_probs_b, ffn_gate_tid2eid;
  TensorView ffn_gate_exps, ffn_up_exps, ffn_down_exps;
  TensorView ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp;
};

struct Weights {
  TensorView token_embd, output, output_norm, output_hc_fn, output_hc_base, output_hc_scale;
  std::vector<LayerWeights> layers;
  std::vector<std::string> unused_tensors;  // tensors in the file the model does not use
};

// The MTP draft module (separate GGUF, MODEL.md 3.1); uses the main model's embedding and head.
struct MtpWeights {
  TensorView hc_head_base, hc_head_fn, hc_head_scale;
  TensorView e_proj, h_proj, enorm, hnorm, norm;
  LayerWeights block;  // raw-window attention + learned-routing MoE (no compressor, no hash table)
};

// Binds every tensor; throws LoadError listing every problem found (not only the first).
Weights bind_weights(const GgufFile& file, const ModelConfig& config);
// The member of w that a main-model tensor spec (model_layout.h) binds to, or null for a name the
// model does not use; w.layers must already hold config.n_layer entries. Lets a loader that does
// not read a GGUF (the GPU's synthetic weights) fill the same views.
TensorView* weight_slot(Weights& w, const TensorSpec& spec);
MtpWeights bind_mtp_weights(const GgufFile& file, const ModelConfig& config);
// The member of w that an MTP tensor spec (mtp_tensor_specs) binds to, or null.
TensorView* mtp_weight_slot(MtpWeights& w, const TensorSpec& spec);

}  // namespace ds4
