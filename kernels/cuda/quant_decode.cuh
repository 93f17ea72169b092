// Device-side decoding of the GGUF weight formats (MODEL.md 4.5) in units of 32 consecutive
// values: F32, F16, BF16, Q8_0 (one unit per block) and Q2_K, Q4_K, IQ2_XXS (8 units per
// 256-value super-block). Each decode gives the same floats as kernels/quant*.cpp's
// dequantize_row_ref bit for bit (the products are exact in f32, so FMA contraction cannot change
// them). Blocks are read with 2- or 4-byte loads, so any 2-byte-aligned block address works
// (global or shared memory). Included by the .cu files of kernels/cuda only.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/ggml_type.h"

namespace ds4::cuda {

constexpr int kUnitValues = 32;  // values decoded per unit

// Unit geometry of a format: a "unit block" holds kUnits units of 32 values in kBytes bytes.
template <GgmlType T>
struct UnitFormat;
template <>
struct UnitFormat<GgmlType::F32> { static constexpr int kUnits = 1, kBytes = 128; };
template <>
struct UnitFormat<GgmlType::F16> { static constexpr int kUnits = 1, kBytes = 64; };
template <>
struct UnitFormat<GgmlType::BF16> { static constexpr int kUnits = 1, kBytes = 64; };
template <>
struct UnitFormat<GgmlType::Q8_0> { static constexpr int kUnits = 1, kBytes = 34; };
template <>
struct UnitFormat<GgmlType::Q2_K> { static constexpr int kUnits = 8, kBytes = 84; };
template <>
struct UnitFormat<GgmlType::Q4_K> { static constexpr int kUnits = 8, kBytes = 144; };
template <>
struct UnitFormat<GgmlType::IQ2_XXS> { static constexpr int kUnits = 8, kBytes = 66; };

__device__ __forceinline__ uint32_t ld_u16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }
__device__ __forceinline__ uint32_t ld_u32_a2(const uint8_t* p) { return ld_u16(p) | (ld_u16(p + 2) << 16); }
__device__ __forceinline__ uint32_t ld_u32(const uint8_t* p) { return *reinterpret_cast<const uint32_t*>(p); }
__device__ __forceinline__ float half_bits_to_float(uint32_t h) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(h)));
}

// ggml's ksigns_iq2xs: 7 stored sign bits plus a parity bit making the count of negatives even.
__device__ __forceinline__ uint32_t iq2_signs(uint32_t s7) { return s7 | ((__popc(s7) & 1u) << 7); }

// Decodes unit `sub` (0..kUnits-1) of the unit block at `block` into w[0..32).
// grid: the 256-entry IQ2_XXS codebook (shared memory in the kernels; unused for other formats).
template <GgmlType T>
__device__ __forceinline__ void decode_unit(const uint8_t* block, int sub, float* w, const uint64_t* grid);

template <>
__device__ __forceinline__ void decode_unit<GgmlType::F32>(const uint8_t* block, int, float* w, const uint64_t*) {
#pragma unroll
  for (int i = 0; i < 32; ++i) w[i] = __uint_as_float(ld_u32(block + 4 * i));
}

template <>
__device__ __forceinline__ void decode_unit<GgmlType::F16>(const uint8_t* block, int, float* w, const uint64_t*) {
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const uint32_t v = ld_u32(block + 4 * i);
    w[2 * i] = half_bits_to_float(v & 0xffffu);
    w[2 * i + 1] = half_bits_to_float(v >> 16);
  }
}

template <>
__device__ __forceinline__ void decode_unit<GgmlType::BF16>(const uint8_t* block, int, float* w, const uint64_t*) {
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const uint32_t v = ld_u32(block + 4 * i);
    w[2 * i] = __uint_as_float(v << 16);
    w[2 * i + 1] = __uint_as_float(v & 0xffff0000u);
  }
}

template <>
__device__ __forceinline__ void decode_unit<GgmlType::Q8_0>(const uint8_t* block, int, float* w, const uint64_t*) {
  const float d = half_bits_to_float(ld_u16(block));
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const uint32_t v = ld_u16(block + 2 + 2 * i);
    w[2 * i] = d * static_cast<float>(static_cast<int8_t>(v & 0xffu));
    w[2 * i + 1] = d * static_cast<float>(static_cast<int8_t>(v >> 8));
  }
}

// Q2_K: scales[16] at 0, qs[64] at 16, d at 80, dmin at 82. Unit sub = 4h + j covers values
// 128h + 32j .. +31: two 16-value sub-blocks k = 8h + 2j + t from (qs[32h + 16t + l] >> 2j) & 3.
template <>
__device__ __forceinline__ void decode_unit<GgmlType::Q2_K>(const uint8_t* block, int sub, float* w, const uint64_t*) {
  const float d = half_bits_to_float(ld_u16(block + 80));
  const float dmin = half_bits_to_float(ld_u16(block + 82));
  const int h = sub >> 2, j = sub & 3;
#pragma unroll
  for (int t = 0; t < 2; ++t) {
    const uint32_t sc = block[8 * h + 2 * j + t];
    const float dl = d * static_cast<float>(sc & 15u);
    const float ml = dmin * static_cast<float>(sc >> 4);
    const uint8_t* q = block + 16 + 32 * h + 16 * t;
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      const uint32_t word = ld_u32(q + 4 * v);
#pragma unroll
      for (int b = 0; b < 4; ++b) w[16 * t + 4 * v + b] = dl * static_cast<float>((word >> (8 * b + 2 * j)) & 3u) - ml;
    }
  }
}

// Q4_K: d at 0, dmin at 2, scales[12] at 4, qs[128] at 16. Unit sub = 2c + half covers values
// 64c + 32half .. +31 from the low (half 0) or high nibbles of qs[32c .. 32c+31].
template <>
__device__ __forceinline__ void decode_unit<GgmlType::Q4_K>(const uint8_t* block, int sub, float* w, const uint64_t*) {
  const float d = half_bits_to_float(ld_u16(block));
  const float dmin = half_bits_to_float(ld_u16(block + 2));
  const uint8_t* s = block + 4;
  int sc, m;
  if (sub < 4) {
    sc = s[sub] & 63;
    m = s[sub + 4] & 63;
  } else {
    sc = (s[sub + 4] & 0xF) | ((s[sub - 4] >> 6) << 4);
    m = (s[sub + 4] >> 4) | ((s[sub] >> 6) << 4);
  }
  const float dl = d * static_cast<float>(sc);
  const float ml = dmin * static_cast<float>(m);
  const int c = sub >> 1, shift = 4 * (sub & 1);
  const uint8_t* q = block + 16 + 32 * c;
#pragma unroll
  for (int v = 0; v < 8; ++v) {
    const uint32_t word = ld_u32(q + 4 * v);
#pragma unroll
    for (int b = 0; b < 4; ++b) w[4 * v + b] = dl * static_cast<float>((word >> (8 * b + shift)) & 15u) - ml;
  }
}

// IQ2_XXS: d at 0, then per 32-value sub-block 8 bytes: A (4 grid indices) and B (four 7-bit sign
// indices, 4-bit scale in bits 28..31).
template <>
__device__ __forceinline__ void decode_unit<GgmlType::IQ2_XXS>(const uint8_t* block, int sub, float* w,
                                                              const uint64_t* grid) {
  const float d = half_bits_to_float(ld_u16(block));
  const uint8_t* p = block + 2 + 8 * sub;
  const uint32_t a = ld_u32_a2(p), b = ld_u32_a2(p + 4);
  const float db = d * (0.5f + static_cast<float>(b >> 28)) * 0.25f;
#pragma unroll
  for (int l = 0; l < 4; ++l) {
    const uint64_t g = grid[(a >> (8 * l)) & 255u];
    const uint32_t signs = iq2_signs((b >> (7 * l)) & 127u);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float mag = db * static_cast<float>((g >> (8 * j)) & 255u);
      w[8 * l + j] = ((signs >> j) & 1u) ? -mag : mag;
    }
  }
}

// Decodes unit u (values 32u .. 32u+31) of a row starting at `row`.
template <GgmlType T>
__device__ __forceinline__ void decode_row_unit(const uint8_t* row, int64_t u, float* w, const uint64_t* grid) {
  using F = UnitFormat<T>;
  decode_unit<T>(row + (u / F::kUnits) * F::kBytes, static_cast<int>(u % F::kUnits), w, grid);
}

}  // namespace ds4::cuda
