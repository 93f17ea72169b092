// CpuMtpDraftModel and load_mtp (see mtp_draft.h).
#include "engine/mtp_draft.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "engine/kv_state.h"

namespace ds4 {

std::unique_ptr<MtpModule> load_mtp(const std::string& path, const ModelConfig& config) {
  auto m = std::make_unique<MtpModule>();
  m->file = GgufFile::open(path);
  m->weights = bind_mtp_weights(*m->file, config);
  return m;
}

CpuMtpDraftModel::CpuMtpDraftModel(CpuBackend& backend, const ModelConfig& config, const MtpWeights& weights)
    : backend_(backend), config_(config), kv_config_(mtp_kv_config(config)), weights_(weights) {}

std::unique_ptr<SequenceKv> CpuMtpDraftModel::new_state(int max_ahead) {
  // One spare row beyond max_ahead: the ring never wraps onto the window of the next true input.
  return std::make_unique<ContiguousKv>(kv_config_, kv_config_.sliding_window + std::max(max_ahead, 0) + 1);
}

void CpuMtpDraftModel::restart(SequenceKv& state, int64_t pos) {
  auto* kv = dynamic_cast<ContiguousKv*>(&state);
  if (!kv) {
    std::fprintf(stderr, "%s:%d: CpuMtpDraftModel::restart: state not made by new_state()\n", __FILE__, __LINE__);
    std::abort();
  }
  kv->restart_raw_window(pos);
}

}  // namespace ds4
