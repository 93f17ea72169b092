// DeviceWeights: every tensor of a bound model (engine/weights.h) copied to GPU memory exactly as
// stored in the GGUF (quantised blocks stay quantised; nothing is expanded), in one allocation
// with each tensor 256-byte aligned. Views mirror Weights / LayerWeights member for member.
// Built once at start-up by CudaBackend (or a test); immutable afterwards.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "engine/weights.h"
#include "kernels/cuda/device_buffer.h"

namespace ds4 {

// A tensor in device memory (same geometry as TensorView; data is a device address).
struct DeviceTensor {
  const uint8_t* data = nullptr;  // null for an absent optional tensor
  GgmlType type = GgmlType::F32;
  uint64_t ne0 = 0, ne1 = 1, ne2 = 1;
  uint64_t row_bytes = 0;
  bool present() const { return data != nullptr; }
  const float* f32() const { return reinterpret_cast<const float*>(data); }
  const int32_t* i32() const { return reinterpret_cast<const int32_t*>(data); }
  uint64_t n_rows() const { return ne1 * ne2; }
  uint64_t bytes() const { return row_bytes * ne1 * ne2; }
  uint64_t matrix_bytes() const { return row_bytes * ne1; }  // one expert of a 3-D tensor
};

struct DeviceLayerWeights {
  DeviceTensor hc_attn_fn, hc_attn_scale, hc_attn_base;
  DeviceTensor attn_norm, attn_q_a, attn_q_a_norm, attn_q_b, attn_kv, attn_kv_a_norm, attn_sinks;
  DeviceTensor attn_output_a, attn_output_b;
  DeviceTensor attn_compressor_ape, attn_compressor_kv, attn_compressor_gate, attn_compressor_norm;
  DeviceTensor indexer_attn_q_b, indexer_proj;
  DeviceTensor indexer_compressor_ape, indexer_compressor_kv, indexer_compressor_gate, indexer_compressor_norm;
  DeviceTensor hc_ffn_fn, hc_ffn_scale, hc_ffn_base;
  DeviceTensor ffn_norm, ffn_gate_inp, exp_probs_b, ffn_gate_tid2eid;
  DeviceTensor ffn_gate_exps, ffn_up_exps, ffn_down_exps;
  DeviceTensor ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp;
};

class DeviceWeights {
 public:
  // progress(bytes_done, bytes_total) is called after each tensor (may be empty).
  using Progress = std::function<void(uint64_t, uint64_t)>;
  // Uploads every present tensor of `w` to the current CUDA device. Aborts (checked CUDA call)
  // when the device is out of memory; callers check free memory first for a clear message.
  static DeviceWeights upload(const Weights& w, const Progress& progress = {});
  // Bytes the upload of `w` needs (alignment included).
  static uint64_t required_bytes(const Weights& w);

  DeviceTensor token_embd, output, output_norm, output_hc_fn, output_hc_base, output_hc_scale;
  std::vector<DeviceLayerWeights> layers;
  uint64_t bytes() const { return buffer_.bytes(); }

 private:
  cuda::DeviceBuffer buffer_;
};

}  // namespace ds4
