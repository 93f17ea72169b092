// RemoteKvStorage (see remote_kv_storage.h).
#include "parallel/remote_kv_storage.h"

#include <cstdint>
#include <stdexcept>
#include <string>

namespace ds4 {
namespace {

class RemoteKvStorage final : public KvStorage {
 public:
  explicit RemoteKvStorage(const KvPoolLayout& layout) : layout_(layout) {}

  // Distinct, never dereferenced addresses: region r at (r + 1) << 44 (regions are far smaller).
  std::byte* region(int region) override {
    check(region, 0, 0);
    return reinterpret_cast<std::byte*>(static_cast<uintptr_t>(region + 1) << 44);
  }
  bool host_accessible() const override { return false; }
  void copy(int dst_region, int64_t dst_offset, int src_region, int64_t src_offset, int64_t bytes) override {
    check(dst_region, dst_offset, bytes);
    check(src_region, src_offset, bytes);
  }
  void fill_f32(int region, int64_t offset, int64_t count, float) override {
    check(region, offset, count * int64_t(sizeof(float)));
  }

 private:
  void check(int region, int64_t offset, int64_t bytes) const {
    if (region < 0 || region >= layout_.num_regions() || offset < 0 || bytes < 0 ||
        offset + bytes > layout_.region_bytes(region))
      throw std::out_of_range("remote KV pool: operation outside region " + std::to_string(region));
  }

  const KvPoolLayout layout_;
};

}  // namespace

std::unique_ptr<KvStorage> make_remote_storage(const KvPoolLayout& layout) {
  return std::make_unique<RemoteKvStorage>(layout);
}

}  // namespace ds4
