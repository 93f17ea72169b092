// RecordingKvStorage (see recording_kv_storage.h).
#include "parallel/recording_kv_storage.h"

#include <stdexcept>

namespace ds4 {

RecordingKvStorage::RecordingKvStorage(std::unique_ptr<KvStorage> inner) : inner_(std::move(inner)) {
  if (!inner_) throw std::invalid_argument("RecordingKvStorage: no storage to wrap");
}

void RecordingKvStorage::copy(int dst_region, int64_t dst_offset, int src_region, int64_t src_offset, int64_t bytes) {
  inner_->copy(dst_region, dst_offset, src_region, src_offset, bytes);
  ops_.push_back({.kind = KvOp::Kind::kCopy, .region = dst_region, .offset = dst_offset, .src_region = src_region,
                  .src_offset = src_offset, .size = bytes});
}

void RecordingKvStorage::fill_f32(int region, int64_t offset, int64_t count, float value) {
  inner_->fill_f32(region, offset, count, value);
  ops_.push_back({.kind = KvOp::Kind::kFill, .region = region, .offset = offset, .size = count, .value = value});
}

void RecordingKvStorage::record_rollback(int64_t slot, int64_t num_tokens) {
  ops_.push_back({.kind = KvOp::Kind::kRollback, .offset = slot, .size = num_tokens});
}

std::vector<KvOp> RecordingKvStorage::take_ops() {
  std::vector<KvOp> out;
  out.swap(ops_);
  return out;
}

}  // namespace ds4
