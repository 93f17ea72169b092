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

// Reduce-scatter of v[0..32) over the warp: lane i returns Σ_lanes v[i], combined in warp_sum's
// butterfly tree (offsets 16, 8, 4, 2, 1, own + partner), so each result has the bits of
// warp_sum(v[i]) while every level moves only the half of the values the partner keeps (31
// shuffles instead of 32 × 5). v is clobbered.
// One level: lanes exchange with lane ^ kOffset; the lane whose kOffset bit is set keeps the upper
// kHalf of v[0..2·kHalf), the other the lower (into v[0..kHalf)).
template <int kHalf, int kOffset = kHalf>
__device__ __forceinline__ void scatter_level(double* v, int lane) {
  const bool upper = (lane & kOffset) != 0;
#pragma unroll
  for (int j = 0; j < kHalf; ++j) {
    const double send = upper ? v[j] : v[j + kHalf];
    const double keep = upper ? v[j + kHalf] : v[j];
    v[j] = keep + __shfl_xor_sync(0xffffffffu, send, kOffset);
  }
}
__device__ __forceinline__ double warp_sum_scatter32(double* v) {
  const int lane = threadIdx.x & 31;
  scatter_level<16>(v, lane);
  scatter_level<8>(v, lane);
  scatter_level<4>(v, lane);
  scatter_level<2>(v, lane);
  scatter_level<1>(v, lane);
  return v[0];
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
