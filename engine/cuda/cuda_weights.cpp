// Upload of the bound weights to the GPU as stored (see cuda_weights.h).
#include "engine/cuda/cuda_weights.h"

#include <array>
#include <utility>

namespace ds4 {
namespace {

constexpr uint64_t kTensorAlign = 256;

uint64_t align_up(uint64_t v) { return (v + kTensorAlign - 1) / kTensorAlign * kTensorAlign; }

uint64_t view_bytes(const TensorView& v) { return v.present() ? v.row_bytes * v.ne1 * v.ne2 : 0; }

using LayerPair = std::pair<TensorView LayerWeights::*, DeviceTensor DeviceLayerWeights::*>;
#define DS4_LAYER_PAIR(name) LayerPair{&LayerWeights::name, &DeviceLayerWeights::name}
constexpr std::array kLayerPairs = {
    DS4_LAYER_PAIR(hc_attn_fn), DS4_LAYER_PAIR(hc_attn_scale), DS4_LAYER_PAIR(hc_attn_base),
    DS4_LAYER_PAIR(attn_norm), DS4_LAYER_PAIR(attn_q_a), DS4_LAYER_PAIR(attn_q_a_norm), DS4_LAYER_PAIR(attn_q_b),
    DS4_LAYER_PAIR(attn_kv), DS4_LAYER_PAIR(attn_kv_a_norm), DS4_LAYER_PAIR(attn_sinks),
    DS4_LAYER_PAIR(attn_output_a), DS4_LAYER_PAIR(attn_output_b),
    DS4_LAYER_PAIR(attn_compressor_ape), DS4_LAYER_PAIR(attn_compressor_kv), DS4_LAYER_PAIR(attn_compressor_gate),
    DS4_LAYER_PAIR(attn_compressor_norm), DS4_LAYER_PAIR(indexer_attn_q_b), DS4_LAYER_PAIR(indexer_proj),
    DS4_LAYER_PAIR(indexer_compressor_ape), DS4_LAYER_PAIR(indexer_compressor_kv),
    DS4_LAYER_PAIR(indexer_compressor_gate), DS4_LAYER_PAIR(indexer_compressor_norm),
    DS4_LAYER_PAIR(hc_ffn_fn), DS4_LAYER_PAIR(hc_ffn_scale), DS4_LAYER_PAIR(hc_ffn_base),
    DS4_LAYER_PAIR(ffn_norm), DS4_LAYER_PAIR(ffn_gate_inp), DS4_LAYER_PAIR(exp_probs_b),
    DS4_LAYER_PAIR(ffn_gate_tid2eid), DS4_LAYER_PAIR(ffn_gate_exps), DS4_LAYER_PAIR(ffn_up_exps),
    DS4_LAYER_PAIR(ffn_down_exps), DS4_LAYER_PAIR(ffn_gate_shexp), DS4_LAYER_PAIR(ffn_up_shexp),
    DS4_LAYER_PAIR(ffn_down_shexp),
};
#undef DS4_LAYER_PAIR

using GlobalPair = std::pair<TensorView Weights::*, DeviceTensor DeviceWeights::*>;
constexpr std::array kGlobalPairs = {
    GlobalPair{&Weights::token_embd, &DeviceWeights::token_embd},
    GlobalPair{&Weights::output, &DeviceWeights::output},
    GlobalPair{&Weights::output_norm, &DeviceWeights::output_norm},
    GlobalPair{&Weights::output_hc_fn, &DeviceWeights::output_hc_fn},
    GlobalPair{&Weights::output_hc_base, &DeviceWeights::output_hc_base},
    GlobalPair{&Weights::output_hc_scale, &DeviceWeights::output_hc_scale},
};

// Calls fn(host view, device view) for every tensor slot of the model.
template <typename Fn>
void for_each_slot(const Weights& w, DeviceWeights* d, Fn fn) {
  for (const auto& [host, dev] : kGlobalPairs) fn(w.*host, d ? &(d->*dev) : nullptr);
  for (size_t il = 0; il < w.layers.size(); ++il)
    for (const auto& [host, dev] : kLayerPairs) fn(w.layers[il].*host, d ? &(d->layers[il].*dev) : nullptr);
}

}  // namespace

uint64_t DeviceWeights::required_bytes(const Weights& w) {
  uint64_t total = 0;
  for_each_slot(w, nullptr, [&](const TensorView& v, DeviceTensor*) { total += align_up(view_bytes(v)); });
  return total;
}

DeviceWeights DeviceWeights::upload(const Weights& w, const Progress& progress) {
  DeviceWeights d;
  d.layers.resize(w.layers.size());
  const uint64_t total = required_bytes(w);
  d.buffer_.grow(total);
  uint8_t* base = d.buffer_.as<uint8_t>();
  uint64_t offset = 0;
  for_each_slot(w, &d, [&](const TensorView& v, DeviceTensor* t) {
    if (!v.present()) return;
    const uint64_t bytes = view_bytes(v);
    DS4_CUDA_CHECK(cudaMemcpy(base + offset, v.data, bytes, cudaMemcpyHostToDevice));
    *t = DeviceTensor{base + offset, v.type, v.ne0, v.ne1, v.ne2, v.row_bytes};
    offset += align_up(bytes);
    if (progress) progress(offset, total);
  });
  return d;
}

}  // namespace ds4
