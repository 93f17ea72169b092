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

class CpuBackend final : public Backend {
 public:
  // config and weights must outlive the backend. threads = 0: hardware concurrency.
  CpuBackend(const ModelConfig& config, const Weights& weights, ForwardOptions options = {}, int threads = 0);
  ForwardOutput forward(const ForwardBatch& batch) override;

 private:
  const ModelConfig& config_;
  const Weights& weights_;
  ForwardOptions options_;
  ThreadPool pool_;
  RopeFrequencies rope_plain_, rope_compressed_;
};

}  // namespace ds4
