// RecordingKvStorage: a KvStorage decorator for the leader rank: it forwards every copy / fill to
// the real storage and logs it as a KvOp, so the step message can replay the pool's storage
// operations (prefix-cache snapshots, slot initialisation) on the followers in the same order.
// The leader's backend appends its rollbacks to the same log (record_rollback). Engine thread only.
#pragma once
#include <memory>
#include <vector>

#include "kvcache/kv_storage.h"
#include "parallel/step_message.h"

namespace ds4 {

class RecordingKvStorage final : public KvStorage {
 public:
  explicit RecordingKvStorage(std::unique_ptr<KvStorage> inner);
  std::byte* region(int region) override { return inner_->region(region); }
  bool host_accessible() const override { return inner_->host_accessible(); }
  void copy(int dst_region, int64_t dst_offset, int src_region, int64_t src_offset, int64_t bytes) override;
  void fill_f32(int region, int64_t offset, int64_t count, float value) override;
  void record_rollback(int64_t slot, int64_t num_tokens);
  // The operations since the last take (in order), leaving the log empty.
  std::vector<KvOp> take_ops();

 private:
  std::unique_ptr<KvStorage> inner_;
  std::vector<KvOp> ops_;
};

}  // namespace ds4
