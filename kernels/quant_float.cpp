// The plain float formats F32, F16 and BF16: dequantise (widen), quantise (round to nearest even)
// and dot against f32. The AVX2/F16C paths widen with the same exact conversions as the scalar
// references (F16C vcvtph2ps is exact for every finite half), so both give identical floats.
// Called through kernels/quant.cpp.
#include <cstring>

#include "kernels/f16.h"
#include "kernels/quant_formats.h"

namespace ds4::quant {
namespace {

// ---- F32 -------------------------------------------------------------------------------------

void f32_dequantize(const uint8_t* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}

void f32_quantize(const float* src, uint8_t* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}

float f32_dot(const uint8_t* w, const float* x, int64_t n) {
  int64_t i = 0;
  float tail = 0.0f;
#ifdef __AVX2__
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  const auto* wf = reinterpret_cast<const float*>(w);  // unaligned loads below
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k)
      acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(wf + i + 8 * k), _mm256_loadu_ps(x + i + 8 * k),
                               acc[k]);
  for (; i + 8 <= n; i += 8)
    acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(wf + i), _mm256_loadu_ps(x + i), acc[0]);
  tail = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
#endif
  for (; i < n; ++i) {
    float v;
    std::memcpy(&v, w + 4 * i, 4);
    tail += v * x[i];
  }
  return tail;
}

// ---- F16 -------------------------------------------------------------------------------------

void f16_dequantize_ref(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_u16(src + 2 * i));
}

void f16_dequantize(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
#ifdef __AVX2__
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(
                                  reinterpret_cast<const __m128i*>(src + 2 * i))));
#endif
  for (; i < n; ++i) dst[i] = f16_to_f32(load_u16(src + 2 * i));
}

void f16_quantize(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store_u16(dst + 2 * i, f32_to_f16(src[i]));
}

float f16_dot(const uint8_t* w, const float* x, int64_t n) {
  int64_t i = 0;
  float tail = 0.0f;
#ifdef __AVX2__
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  auto half8 = [&](int64_t at) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * at)));
  };
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k)
      acc[k] = _mm256_fmadd_ps(half8(i + 8 * k), _mm256_loadu_ps(x + i + 8 * k), acc[k]);
  for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(half8(i), _mm256_loadu_ps(x + i), acc[0]);
  tail = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
#endif
  for (; i < n; ++i) tail += f16_to_f32(load_u16(w + 2 * i)) * x[i];
  return tail;
}

// ---- BF16 ------------------------------------------------------------------------------------

void bf16_dequantize_ref(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(src + 2 * i));
}

#ifdef __AVX2__
inline __m256 bf16x8(const uint8_t* p) {  // 8 bf16 -> 8 f32 (upper halves of the f32 bits)
  const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}
#endif

void bf16_dequantize(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
#ifdef __AVX2__
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, bf16x8(src + 2 * i));
#endif
  for (; i < n; ++i) dst[i] = bf16_to_f32(load_u16(src + 2 * i));
}

void bf16_quantize(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store_u16(dst + 2 * i, f32_to_bf16(src[i]));
}

float bf16_dot(const uint8_t* w, const float* x, int64_t n) {
  int64_t i = 0;
  float tail = 0.0f;
#ifdef __AVX2__
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k)
      acc[k] = _mm256_fmadd_ps(bf16x8(w + 2 * (i + 8 * k)), _mm256_loadu_ps(x + i + 8 * k),
                               acc[k]);
  for (; i + 8 <= n; i += 8)
    acc[0] = _mm256_fmadd_ps(bf16x8(w + 2 * i), _mm256_loadu_ps(x + i), acc[0]);
  tail = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
#endif
  for (; i < n; ++i) tail += bf16_to_f32(load_u16(w + 2 * i)) * x[i];
  return tail;
}

}  // namespace

const FormatOps& f32_ops() {
  static constexpr FormatOps kOps{GgmlType::F32, f32_dequantize, f32_dequantize, f32_quantize,
                                  f32_dot};
  return kOps;
}

const FormatOps& f16_ops() {
  static constexpr FormatOps kOps{GgmlType::F16, f16_dequantize_ref, f16_dequantize,
                                  f16_quantize, f16_dot};
  return kOps;
}

const FormatOps& bf16_ops() {
  static constexpr FormatOps kOps{GgmlType::BF16, bf16_dequantize_ref, bf16_dequantize,
                                  bf16_quantize, bf16_dot};
  return kOps;
}

}  // namespace ds4::quant
