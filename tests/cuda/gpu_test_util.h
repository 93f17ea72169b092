// Helpers of the GPU tests: a visible skip when no CUDA device is usable (the CI machines have
// nvcc but no GPU), device arrays filled from and read back into host vectors, random data, and
// the relative-error measure the tests state their tolerances in. Used by tests/cuda/*_test.cpp.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/device_buffer.h"

namespace ds4::test {

inline bool gpu_available(std::string* why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
    return false;
  }
  if (n == 0) {
    *why = "no CUDA device";
    return false;
  }
  return true;
}

// Skips the test (printed as SKIPPED with the reason) when there is no usable GPU.
#define DS4_REQUIRE_GPU()                                                                          \
  do {                                                                                             \
    std::string ds4_why_;                                                                          \
    if (!::ds4::test::gpu_available(&ds4_why_)) GTEST_SKIP() << "no usable CUDA device (" << ds4_why_ << ")"; \
  } while (0)

// A device copy of a host vector; to_host() reads it back (synchronous).
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) : n_(n) { buf_.grow(std::max<size_t>(n, 1) * sizeof(T)); }
  explicit DeviceArray(const std::vector<T>& v) : DeviceArray(v.size()) { upload(v); }
  void upload(const std::vector<T>& v) {
    if (v.size() > n_) std::abort();
    if (!v.empty()) DS4_CUDA_CHECK(cudaMemcpy(buf_.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> to_host() const {
    std::vector<T> v(n_);
    DS4_CUDA_CHECK(cudaDeviceSynchronize());
    if (n_) DS4_CUDA_CHECK(cudaMemcpy(v.data(), buf_.get(), n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
  T* get() const { return buf_.as<T>(); }
  size_t size() const { return n_; }

 private:
  cuda::DeviceBuffer buf_;
  size_t n_ = 0;
};

inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// max |a − b| / max |b| (0 when b is all zero and a == b); NaN anywhere gives +inf.
inline double max_rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double max_abs = 0.0, scale = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    max_abs = std::max(max_abs, std::fabs(double(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return scale > 0 ? max_abs / scale : max_abs;
}

// Directory of the build outputs (models/): $DS4_BINARY_DIR, else the configure-time value.
inline std::string binary_dir() {
  const char* env = std::getenv("DS4_BINARY_DIR");
  return env && *env ? env : DS4_BINARY_DIR;
}

}  // namespace ds4::test
