// CpuBackend: the readable, exact reference forward pass (f32 from dequantised weights,
// multithreaded). Every fast backend is tested against it. Owned and called by one thread.
// Speculative inputs keep an undo log (engine/kv_undo.h) until the next forward(); rollback()
// replays it. forward_mtp() runs the MTP draft module on the same thread pool (never sharded: the
// leader drafts alone). With ExpertParallel active, forward() computes only this rank's routed
// experts and all-reduces the routed sums (every rank of the group must run the same forwards);
// the read counters then count this rank's experts only. In data-parallel mode
// (ExpertParallel::data_parallel) each rank's forward() runs only its own sequences (possibly none:
// an empty batch still takes part in every layer's all-to-alls) and the routes go to the experts'
// owners; a token's logits are then bit-identical to one process's.
#pragma once
#include <memory>
#include <unordered_map>

#include "engine/draft_model.h"
#include "engine/expert_parallel.h"
#include "engine/forward.h"
#include "engine/kv_undo.h"
#include "engine/model_config.h"
#include "engine/rope.h"
#include "engine/weights.h"
#include "kernels/thread_pool.h"

namespace ds4 {

// The config of the MTP module's KV state (MODEL.md 3.2): one raw-window layer.
ModelConfig mtp_kv_config(const ModelConfig& config);

class CpuBackend final : public Backend {
 public:
  // config and weights must outlive the backend. threads = 0: hardware concurrency. Throws
  // LoadError when options.quantize_kv is set for a model whose shapes the round trips cannot take,
  // or when an active `experts` shard is not inside [0, n_expert) or its communicator's world is 1
  // while the shard is not every expert, or (data-parallel) the ranks' ranges do not cover the
  // experts contiguously in rank order.
  CpuBackend(const ModelConfig& config, const Weights& weights, ForwardOptions options = {}, int threads = 0,
             ExpertParallel experts = {});
  ForwardOutput forward(const ForwardBatch& batch) override;
  bool supports_rollback() const override { return true; }
  void rollback(SequenceKv& kv, int64_t num_tokens) override;
  // The MTP block (MODEL.md 3.2) over a ragged batch of runs (each on an MTP state of
  // mtp_kv_config's shape): per run, the logits (through the main head) and the output state of
  // its last input. Inputs are paired as the caller gives them (see DraftModel).
  ForwardOutput forward_mtp(const MtpWeights& mtp, std::span<const DraftRun> runs);

 private:
  const ModelConfig& config_;
  const Weights& weights_;
  ForwardOptions options_;
  ExpertParallel experts_;
  ThreadPool pool_;
  RopeFrequencies rope_plain_, rope_compressed_;
  int64_t dense_weight_bytes_ = 0;  // every weight but the routed experts and the embedding
  // Undo logs of the last forward()'s speculative sequences (reused between steps).
  std::unordered_map<const SequenceKv*, KvUndoLog> undo_;
  std::vector<KvUndoLog*> prepare_undo(const ForwardBatch& batch);
  // Logits of the given final states through a head collapse (fn/scale/base), norm and the output.
  void head_logits(const TensorView& fn, const TensorView& scale, const TensorView& base, const TensorView& norm,
                   ForwardOutput& out);
};

}  // namespace ds4
