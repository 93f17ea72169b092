// DeviceBuffer: an owning, movable device allocation (cudaMalloc) with kDevicePadBytes of slack
// after the requested size, because the mat-vec kernels read weight rows with aligned 16-byte
// loads that may run up to 15 bytes past a row's end. grow() keeps the buffer when it is large
// enough (scratch reused across steps). Owned by one thread (the engine thread or a test).
#pragma once
#include <cstddef>
#include <cstdint>
#include <utility>

#include "kernels/cuda/cuda_check.h"

namespace ds4::cuda {

constexpr size_t kDevicePadBytes = 64;

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes) { grow(bytes); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { release(); }

  // Ensures at least `bytes` usable bytes; contents are lost when it reallocates.
  void grow(size_t bytes) {
    if (bytes <= bytes_ && ptr_) return;
    release();
    DS4_CUDA_CHECK(cudaMalloc(&ptr_, bytes + kDevicePadBytes));
    bytes_ = bytes;
  }
  void release() {
    if (ptr_) cudaFree(ptr_);  // not checked: may run during teardown after a device error
    ptr_ = nullptr;
    bytes_ = 0;
  }
  size_t bytes() const { return bytes_; }
  void* get() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace ds4::cuda
