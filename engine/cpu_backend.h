// CpuBackend: the readable, exact reference forward pass (f32 from dequantised weights,
// multithreaded). Every fast backend is tested against it. Owned and called by one thread.
#pragma once
#include <memory>

#include "engine/forward.h"
#include "engine/model_config.h"
#include "engine/rope.h"
#include "engine/weights.h"
#include "kernels/thread_pool.h"

namespace ds4 {

// One MTP draft step of one sequence (MODEL.md 3.2): the previous hyper-connection state P (the
// target's final state, or the MTP's own output state for a recursive draft) and a token, at
// position kv->num_tokens() of the MTP's own raw window (a 1-layer KV, see mtp_kv_config).
struct MtpInput {
  SequenceKv* kv = nullptr;
  int32_t token = 0;
  const float* prev_state = nullptr;  // [hc_count * n_embd]
};

// The config of the MTP module's KV state: one raw-window layer.
ModelConfig mtp_kv_config(const ModelConfig& config);

class CpuBackend final : public Backend {
 public:
  // config and weights must outlive the backend. threads = 0: hardware concurrency. Throws
  // LoadError when options.quantize_kv is set for a model whose shapes the round trips cannot take.
  CpuBackend(const ModelConfig& config, const Weights& weights, ForwardOptions options = {}, int threads = 0);
  ForwardOutput forward(const ForwardBatch& batch) override;
  // MTP draft logits (one row per input, through the main head) and output states.
  ForwardOutput forward_mtp(const MtpWeights& mtp, std::span<const MtpInput> inputs);

 private:
  const ModelConfig& config_;
  const Weights& weights_;
  ForwardOptions options_;
  ThreadPool pool_;
  RopeFrequencies rope_plain_, rope_compressed_;
  // Logits of the given final states through a head collapse (fn/scale/base), norm and the output.
  void head_logits(const TensorView& fn, const TensorView& scale, const TensorView& base, const TensorView& norm,
                   ForwardOutput& out);
};

}  // namespace ds4
