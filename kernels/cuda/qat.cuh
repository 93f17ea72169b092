// Device versions of kernels/qat.h: FP8 E4M3 round trip of KV rows (blocks of 64), Walsh–Hadamard
// transform and FP4 E2M1 round trip of indexer vectors (blocks of 32). Same binade arithmetic as
// the CPU code (frexp/ldexp/rint, ties to even), so results are identical bit for bit (tested).
// Included by the .cu files of kernels/cuda.
#pragma once
#include <cstdint>

namespace ds4::cuda {

constexpr float kE4m3MaxD = 448.0f;
constexpr float kE2m1MaxD = 6.0f;
constexpr float kFp8AmaxFloorD = 1.0e-4f;
constexpr float kFp4AmaxFloorD = 7.052966104933725e-38f;

__device__ __forceinline__ float pow2_ceil_scale_d(float y) {
  const uint32_t bits = __float_as_uint(y);
  const int exponent = static_cast<int>((bits >> 23) & 0xffu) - 127;
  const int ceil_log2 = exponent + ((bits & 0x7fffffu) != 0 ? 1 : 0);
  return ldexpf(1.0f, ceil_log2);
}

__device__ __forceinline__ float e4m3_round_d(float v) {
  const float ax = fabsf(v);
  int code;
  if (!(ax < kE4m3MaxD)) {
    code = 126;
  } else if (ax < 0.015625f) {
    code = static_cast<int>(rintf(ax * 512.0f));
  } else {
    int e2;
    frexpf(ax, &e2);
    const int e = e2 - 1;
    const int q = static_cast<int>(rintf(ldexpf(ax, 3 - e)));
    code = ((e + 7) << 3) + (q - 8);
  }
  const int e = (code >> 3) & 15, m = code & 7;
  const float mag = e == 0 ? ldexpf(static_cast<float>(m), -9) : ldexpf(1.0f + static_cast<float>(m) / 8.0f, e - 7);
  return copysignf(mag, v);
}

__device__ __forceinline__ float e2m1_round_d(float v) {
  const float ax = fabsf(v);
  int index;
  if (!(ax < kE2m1MaxD)) index = 7;
  else if (ax < 2.0f) index = static_cast<int>(rintf(ax * 2.0f));
  else if (ax < 4.0f) index = static_cast<int>(rintf(ax)) + 2;
  else index = static_cast<int>(rintf(ax * 0.5f)) + 4;
  const float kValues[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  return copysignf(kValues[index & 7], v);
}

// FP8 round trip of one block of 64 values x[0..64) (one thread).
__device__ inline void fp8_block_round_trip(float* x) {
  float amax = 0.0f;
  for (int i = 0; i < 64; ++i) amax = fmaxf(amax, fabsf(x[i]));
  const float scale = pow2_ceil_scale_d(fmaxf(amax, kFp8AmaxFloorD) / kE4m3MaxD);
  for (int i = 0; i < 64; ++i) {
    const float v = fminf(fmaxf(x[i] / scale, -kE4m3MaxD), kE4m3MaxD);
    x[i] = e4m3_round_d(v) * scale;
  }
}

// FP4 round trip of one block of 32 values x[0..32) (one thread).
__device__ inline void fp4_block_round_trip(float* x) {
  float amax = 0.0f;
  for (int i = 0; i < 32; ++i) amax = fmaxf(amax, fabsf(x[i]));
  const float scale = pow2_ceil_scale_d(fmaxf(amax, kFp4AmaxFloorD) / kE2m1MaxD);
  for (int i = 0; i < 32; ++i) {
    const float v = fminf(fmaxf(x[i] / scale, -kE2m1MaxD), kE2m1MaxD);
    x[i] = e2m1_round_d(v) * scale;
  }
}

// The same FP8 round trip of x[0..64) by one warp (every lane calls it; two values per lane): the
// amax is a max (exact in any order) and each value rounds alone, so the bits are the same.
__device__ inline void fp8_block_round_trip_warp(float* x) {
  const int lane = threadIdx.x & 31;
  const float a = x[2 * lane], b = x[2 * lane + 1];
  float amax = fmaxf(fabsf(a), fabsf(b));
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  const float scale = pow2_ceil_scale_d(fmaxf(amax, kFp8AmaxFloorD) / kE4m3MaxD);
  x[2 * lane] = e4m3_round_d(fminf(fmaxf(a / scale, -kE4m3MaxD), kE4m3MaxD)) * scale;
  x[2 * lane + 1] = e4m3_round_d(fminf(fmaxf(b / scale, -kE4m3MaxD), kE4m3MaxD)) * scale;
  __syncwarp();
}

// The same FP4 round trip of x[0..32) by one warp (one value per lane).
__device__ inline void fp4_block_round_trip_warp(float* x) {
  const int lane = threadIdx.x & 31;
  const float v = x[lane];
  float amax = fabsf(v);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  const float scale = pow2_ceil_scale_d(fmaxf(amax, kFp4AmaxFloorD) / kE2m1MaxD);
  x[lane] = e2m1_round_d(fminf(fmaxf(v / scale, -kE2m1MaxD), kE2m1MaxD)) * scale;
  __syncwarp();
}

// Indexer QAT of n values in shared memory (n a power of two ≥ 32), by the whole block:
// Walsh–Hadamard butterflies, × (float)(1/sqrt(n)), FP4 per 32. Contains __syncthreads.
__device__ inline void hadamard_fp4_block(float* x, int n) {
  __syncthreads();
  for (int stride = 1; stride < n; stride <<= 1) {
    for (int i = threadIdx.x; i < n / 2; i += blockDim.x) {
      const int base = (i / stride) * 2 * stride, k = base + (i % stride);
      const float a = x[k], b = x[k + stride];
      x[k] = a + b;
      x[k + stride] = a - b;
    }
    __syncthreads();
  }
  const float inv_sqrt_n = static_cast<float>(1.0 / sqrt(static_cast<double>(n)));
  for (int i = threadIdx.x; i < n; i += blockDim.x) x[i] *= inv_sqrt_n;
  __syncthreads();
  if (blockDim.x % 32 == 0) {  // a warp per block of 32
    for (int b = threadIdx.x >> 5; b < n / 32; b += blockDim.x >> 5) fp4_block_round_trip_warp(x + 32 * b);
  } else {
    for (int b = threadIdx.x; b < n / 32; b += blockDim.x) fp4_block_round_trip(x + 32 * b);
  }
  __syncthreads();
}

}  // namespace ds4::cuda
