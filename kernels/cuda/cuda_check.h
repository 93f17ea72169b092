// Checked CUDA runtime calls for host code: every runtime call and kernel launch goes through
// DS4_CUDA_CHECK / DS4_CUDA_LAUNCH_CHECK, which abort with file:line and CUDA's error string; a
// launch whose shapes are invalid aborts through launch_fail naming the kernel and the problem
// (programmer errors, DESIGN.md "Errors"). Included by kernels/cuda, engine/cuda and the GPU tests.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace ds4::cuda {

[[noreturn]] inline void cuda_fail(cudaError_t err, const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: CUDA error %s (%s) in %s\n", file, line, cudaGetErrorName(err), cudaGetErrorString(err),
               what);
  std::abort();
}

[[noreturn]] inline void launch_fail(const char* kernel, const std::string& problem, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: %s: %s\n", file, line, kernel, problem.c_str());
  std::abort();
}

}  // namespace ds4::cuda

#define DS4_CUDA_CHECK(call)                                                            \
  do {                                                                                  \
    const cudaError_t ds4_err_ = (call);                                                \
    if (ds4_err_ != cudaSuccess) ::ds4::cuda::cuda_fail(ds4_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define DS4_CUDA_LAUNCH_CHECK(kernel_name)                                                 \
  do {                                                                                     \
    const cudaError_t ds4_err_ = cudaGetLastError();                                       \
    if (ds4_err_ != cudaSuccess) ::ds4::cuda::cuda_fail(ds4_err_, kernel_name, __FILE__, __LINE__); \
  } while (0)

// Shape/argument check at a launch site: aborts naming the kernel when cond is false.
#define DS4_LAUNCH_REQUIRE(cond, kernel_name, problem)                                   \
  do {                                                                                   \
    if (!(cond)) ::ds4::cuda::launch_fail(kernel_name, problem, __FILE__, __LINE__);    \
  } while (0)
