// DS4_HOST_DEVICE: marks a header-only function callable from both host code and CUDA kernels
// (expands to nothing for a host compiler). Used by the few pure functions whose exact bits must
// agree between the CPU and the GPU (splitmix64, the synthetic quantised blocks).
#pragma once

#if defined(__CUDACC__)
#define DS4_HOST_DEVICE __host__ __device__
#else
#define DS4_HOST_DEVICE
#endif
