// Block-wide reductions and scans with a fixed combination order (so results never depend on
// timing): butterfly within a warp, then warp 0 over the per-warp values. Every thread of the
// block must call them (they contain __syncthreads). Included by the .cu files of kernels/cuda.
#pragma once
#include <cstdint>

namespace ds4::cuda {

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Sum over the block, returned to every thread.
template <typename T>
__device__ T block_sum(T v) {
  __shared__ T partial[32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T s = lane < n_warps ? partial[lane] : T(0);
    s = warp_sum(s);
    if (lane == 0) partial[0] = s;
  }
  __syncthreads();
  const T total = partial[0];
  __syncthreads();
  return total;
}

// Max over the block, returned to every thread.
__device__ inline float block_max(float v) {
  __shared__ float partial[32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < n_warps ? partial[lane] : -INFINITY;
    s = warp_max(s);
    if (lane == 0) partial[0] = s;
  }
  __syncthreads();
  const float total = partial[0];
  __syncthreads();
  return total;
}

// (value, index) with "larger value, then lower index" wins.
struct ArgMax {
  float value;
  int index;
};
__device__ __forceinline__ ArgMax argmax_better(ArgMax a, ArgMax b) {
  if (b.index < 0) return a;
  if (a.index < 0) return b;
  if (b.value > a.value || (b.value == a.value && b.index < a.index)) return b;
  return a;
}
__device__ __forceinline__ ArgMax warp_argmax(ArgMax v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    ArgMax o{__shfl_xor_sync(0xffffffffu, v.value, off), __shfl_xor_sync(0xffffffffu, v.index, off)};
    v = argmax_better(v, o);
  }
  return v;
}
__device__ inline ArgMax block_argmax(ArgMax v) {
  __shared__ ArgMax partial[32];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = (blockDim.x + 31) >> 5;
  v = warp_argmax(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    ArgMax s = lane < n_warps ? partial[lane] : ArgMax{-INFINITY, -1};
    s = warp_argmax(s);
    if (lane == 0) partial[0] = s;
  }
  __syncthreads();
  const ArgMax total = partial[0];
  __syncthreads();
  return total;
}

// Exclusive prefix sum over the block (thread order); *total receives the block's sum.
__device__ inline int block_exclusive_scan(int v, int* total) {
  __shared__ int partial[33];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = (blockDim.x + 31) >> 5;
  int inc = v;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const int o = __shfl_up_sync(0xffffffffu, inc, off);
    if (lane >= off) inc += o;
  }
  if (lane == 31) partial[warp] = inc;
  __syncthreads();
  if (threadIdx.x == 0) {
    int run = 0;
    for (int w = 0; w < n_warps; ++w) {
      const int s = partial[w];
      partial[w] = run;
      run += s;
    }
    partial[32] = run;
  }
  __syncthreads();
  const int result = partial[warp] + inc - v;
  *total = partial[32];
  __syncthreads();
  return result;
}

}  // namespace ds4::cuda
