// CudaMtpDraftModel (see cuda_mtp.h): slot pool, per-sequence state, forward.
#include "engine/cuda/cuda_mtp.h"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace ds4 {
namespace {

[[noreturn]] void state_error(const char* what) {
  std::fprintf(stderr, "%s:%d: CudaMtpDraftModel: %s\n", __FILE__, __LINE__, what);
  std::abort();
}

}  // namespace

// One sequence's draft state: its ring slot, position and window start. Only raw rows exist.
class CudaMtpDraftModel::State final : public SequenceKv {
 public:
  State(CudaMtpDraftModel& model, int32_t slot) : model_(model), slot_(slot) {}
  ~State() override { model_.free_slot(slot_); }
  int64_t num_tokens() const override { return n_tokens_; }
  void set_num_tokens(int64_t n) override {
    if (n < window_start_) state_error("position before the window start");
    n_tokens_ = n;
  }
  bool reserve(int64_t) override { return true; }  // the ring is the whole state
  float* raw_row(int layer, int64_t pos) override {  // device address
    if (layer != 0 || pos < 0) state_error("no such raw row");
    return model_.pool_.as<float>() + (int64_t(slot_) * model_.ring_rows_ + pos % model_.ring_rows_) * model_.config_.head_dim;
  }
  int64_t raw_window_start() const override { return window_start_; }
  float* comp_row(int, int64_t) override { state_error("the MTP block has no compressed rows"); }
  float* index_row(int, int64_t) override { state_error("the MTP block has no indexer rows"); }
  float* frontier_kv(int, bool) override { state_error("the MTP block has no compressor"); }
  float* frontier_score(int, bool) override { state_error("the MTP block has no compressor"); }

  int32_t slot() const { return slot_; }
  void restart(int64_t pos) { n_tokens_ = window_start_ = pos; }

 private:
  CudaMtpDraftModel& model_;
  int32_t slot_;
  int64_t n_tokens_ = 0, window_start_ = 0;
};

CudaMtpDraftModel::CudaMtpDraftModel(CudaBackend& backend, const ModelConfig& config, DeviceMtpWeights weights)
    : backend_(backend), config_(config), weights_(std::move(weights)), ring_rows_(config.sliding_window + kMaxAhead + 1) {}

CudaMtpDraftModel::~CudaMtpDraftModel() {
  if (slots_in_use_ != 0) std::fprintf(stderr, "CudaMtpDraftModel: destroyed with %zu live states\n", slots_in_use_);
}

int32_t CudaMtpDraftModel::take_slot() {
  if (free_.empty()) {  // double the pool, keeping the rows of live slots
    const int32_t grown = capacity_ == 0 ? 8 : capacity_ * 2;
    const size_t slot_bytes = size_t(ring_rows_) * config_.head_dim * sizeof(float);
    cuda::DeviceBuffer bigger(slot_bytes * grown);
    DS4_CUDA_CHECK(cudaDeviceSynchronize());  // the backend's stream is idle between calls; make sure
    if (capacity_ > 0) DS4_CUDA_CHECK(cudaMemcpy(bigger.get(), pool_.get(), slot_bytes * capacity_, cudaMemcpyDeviceToDevice));
    pool_ = std::move(bigger);
    for (int32_t s = grown - 1; s >= capacity_; --s) free_.push_back(s);
    capacity_ = grown;
  }
  const int32_t slot = free_.back();
  free_.pop_back();
  ++slots_in_use_;
  return slot;
}

void CudaMtpDraftModel::free_slot(int32_t slot) {
  free_.push_back(slot);
  --slots_in_use_;
}

std::unique_ptr<SequenceKv> CudaMtpDraftModel::new_state(int max_ahead) {
  if (max_ahead > kMaxAhead)
    throw std::invalid_argument("MTP draft state: " + std::to_string(max_ahead) + " rows ahead asked, the CUDA ring holds " +
                                std::to_string(kMaxAhead));
  return std::make_unique<State>(*this, take_slot());
}

void CudaMtpDraftModel::restart(SequenceKv& state, int64_t pos) {
  auto* s = dynamic_cast<State*>(&state);
  if (!s) state_error("restart: state not made by new_state()");
  s->restart(pos);
}

cuda::LayerKv CudaMtpDraftModel::ring() const {
  cuda::LayerKv kv;
  kv.raw = pool_.as<float>();
  kv.window = config_.sliding_window, kv.head_dim = config_.head_dim, kv.indexer_dim = config_.indexer_dim;
  kv.ratio = 0, kv.raw_ring_rows = ring_rows_, kv.raw_slot_stride = int64_t(ring_rows_) * config_.head_dim;
  return kv;
}

ForwardOutput CudaMtpDraftModel::forward(std::span<const DraftRun> runs) {
  std::vector<CudaBackend::MtpSlot> slots;
  for (const DraftRun& run : runs) {
    const auto* s = dynamic_cast<const State*>(run.kv);
    if (!s) state_error("forward: state not made by new_state()");
    slots.push_back({s->slot(), s->raw_window_start()});
  }
  return backend_.forward_mtp(weights_, ring(), runs, slots);
}

}  // namespace ds4
