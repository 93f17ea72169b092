// CudaMtpDraftModel: the MTP draft module (MODEL.md 3) as a DraftModel on the CUDA backend
// (CudaBackend::forward_mtp over DeviceMtpWeights). Each sequence's draft state is a slot of a
// device raw-window ring pool with window + kMaxAhead + 1 rows per slot, so recursive drafts ahead
// of the last true row never overwrite rows a later true input reads, and a window start (restart):
// rows before it are invisible to attention. The pool grows by doubling as states are created.
// Created at start-up beside the backend (server, bench, tests); used on the engine thread only.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_weights.h"
#include "engine/draft_model.h"

namespace ds4 {

class CudaMtpDraftModel final : public DraftModel {
 public:
  static constexpr int kMaxAhead = 17;  // new_state(max_ahead) accepts up to this (K <= 16, plus one)
  // backend and config must outlive this object.
  CudaMtpDraftModel(CudaBackend& backend, const ModelConfig& config, DeviceMtpWeights weights);
  ~CudaMtpDraftModel() override;
  int64_t state_width() const override { return int64_t(config_.hc_count) * config_.n_embd; }
  // Throws std::invalid_argument when max_ahead exceeds kMaxAhead.
  std::unique_ptr<SequenceKv> new_state(int max_ahead) override;
  void restart(SequenceKv& state, int64_t pos) override;
  ForwardOutput forward(std::span<const DraftRun> runs) override;

  const DeviceMtpWeights& weights() const { return weights_; }
  int ring_rows() const { return ring_rows_; }
  int live_states() const { return static_cast<int>(slots_in_use_); }

 private:
  class State;
  int32_t take_slot();
  void free_slot(int32_t slot);
  cuda::LayerKv ring() const;

  CudaBackend& backend_;
  const ModelConfig& config_;
  DeviceMtpWeights weights_;
  int ring_rows_ = 0;
  cuda::DeviceBuffer pool_;  // [capacity_, ring_rows_, head_dim] f32
  int32_t capacity_ = 0;
  std::vector<int32_t> free_;
  size_t slots_in_use_ = 0;
};

}  // namespace ds4
