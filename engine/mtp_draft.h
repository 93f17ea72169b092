// The MTP draft module (MODEL.md 3) as a DraftModel on the CPU backend, and loading its separate
// GGUF beside the main model (it shares the main model's embedding and output head). Each
// sequence's draft state is a one-layer raw-window KV (mtp_kv_config) with a ring larger than the
// window, so recursive drafts ahead of the last true row never overwrite rows later inputs read.
// Created at start-up by the server / bench / tests; used on the engine thread.
#pragma once
#include <memory>
#include <string>

#include "engine/cpu_backend.h"
#include "engine/draft_model.h"
#include "engine/gguf.h"

namespace ds4 {

struct MtpModule {
  std::unique_ptr<GgufFile> file;  // owns the mapping the weights point into
  MtpWeights weights;
};

// Opens and binds an MTP file for this model; throws LoadError naming the problem.
std::unique_ptr<MtpModule> load_mtp(const std::string& path, const ModelConfig& config);

class CpuMtpDraftModel final : public DraftModel {
 public:
  // backend, config and weights must outlive this object.
  CpuMtpDraftModel(CpuBackend& backend, const ModelConfig& config, const MtpWeights& weights);
  int64_t state_width() const override { return int64_t(config_.hc_count) * config_.n_embd; }
  std::unique_ptr<SequenceKv> new_state(int max_ahead) override;
  void restart(SequenceKv& state, int64_t pos) override;
  ForwardOutput forward(std::span<const DraftRun> runs) override { return backend_.forward_mtp(weights_, runs); }

 private:
  CpuBackend& backend_;
  const ModelConfig& config_;
  ModelConfig kv_config_;
  const MtpWeights& weights_;
};

}  // namespace ds4
