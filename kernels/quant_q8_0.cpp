// Q8_0 (34 B per 32 values: f16 d, int8 q[32]; x_i = d·q_i), MODEL.md 4.5.
// d·q_i is exact in f32 (11-bit mantissa times a 7-bit integer), so the AVX2 decode gives the
// reference floats bit for bit. The quantiser uses the stored (f16-rounded) d for q.
// Called through kernels/quant.cpp.
#include <cmath>

#include "kernels/f16.h"
#include "kernels/quant_formats.h"

namespace ds4::quant {
namespace {

void q8_0_dequantize_ref(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQ8_0Values; ++b, src += kQ8_0Bytes, dst += kQ8_0Values) {
    const float d = f16_to_f32(load_u16(src));
    const auto* q = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < kQ8_0Values; ++j) dst[j] = static_cast<float>(q[j]) * d;
  }
}

// d = amax/127 rounded to f16 (saturating at the f16 maximum); q = round(x/d) in [-127, 127].
void q8_0_quantize(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQ8_0Values; ++b, src += kQ8_0Values, dst += kQ8_0Bytes) {
    float amax = 0.0f;
    for (int j = 0; j < kQ8_0Values; ++j) amax = std::fmax(amax, std::fabs(src[j]));
    const uint16_t d_bits = f32_to_f16(std::fmin(amax / 127.0f, kF16Max));
    const float d = f16_to_f32(d_bits);
    store_u16(dst, d_bits);
    auto* q = reinterpret_cast<int8_t*>(dst + 2);
    for (int j = 0; j < kQ8_0Values; ++j)
      q[j] = static_cast<int8_t>(d > 0.0f ? clamp_int(round_to_int(src[j] / d), -127, 127) : 0);
  }
}

#ifdef __AVX2__
// The 32 values of one block as four 8-lane vectors, exactly as the reference computes them.
inline void q8_0_decode(const uint8_t* block, __m256 out[4]) {
  const __m256 d = _mm256_set1_ps(f16_to_f32(load_u16(block)));
  for (int k = 0; k < 4; ++k) {
    const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + 8 * k));
    out[k] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), d);
  }
}
#endif

void q8_0_dequantize(const uint8_t* src, float* dst, int64_t n) {
#ifdef __AVX2__
  for (int64_t b = 0; b < n / kQ8_0Values; ++b, src += kQ8_0Bytes, dst += kQ8_0Values) {
    __m256 v[4];
    q8_0_decode(src, v);
    for (int k = 0; k < 4; ++k) _mm256_storeu_ps(dst + 8 * k, v[k]);
  }
#else
  q8_0_dequantize_ref(src, dst, n);
#endif
}

float q8_0_dot(const uint8_t* w, const float* x, int64_t n) {
#ifdef __AVX2__
  // Σ_blocks d·(Σ_j q_j·x_j): the integer part is converted once per lane, d applied per block.
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / kQ8_0Values; ++b, w += kQ8_0Bytes, x += kQ8_0Values) {
    __m256 s[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int k = 0; k < 4; ++k) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + 2 + 8 * k));
      const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
      s[k & 1] = _mm256_fmadd_ps(q, _mm256_loadu_ps(x + 8 * k), s[k & 1]);
    }
    const __m256 d = _mm256_set1_ps(f16_to_f32(load_u16(w)));
    if (b & 1)
      acc1 = _mm256_fmadd_ps(d, _mm256_add_ps(s[0], s[1]), acc1);
    else
      acc0 = _mm256_fmadd_ps(d, _mm256_add_ps(s[0], s[1]), acc0);
  }
  return hsum_ps(_mm256_add_ps(acc0, acc1));
#else
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQ8_0Values; ++b, w += kQ8_0Bytes, x += kQ8_0Values) {
    const auto* q = reinterpret_cast<const int8_t*>(w + 2);
    float s = 0.0f;
    for (int j = 0; j < kQ8_0Values; ++j) s += static_cast<float>(q[j]) * x[j];
    sum += f16_to_f32(load_u16(w)) * s;
  }
  return sum;
#endif
}

}  // namespace

const FormatOps& q8_0_ops() {
  static constexpr FormatOps kOps{GgmlType::Q8_0, q8_0_dequantize_ref, q8_0_dequantize,
                                  q8_0_quantize, q8_0_dot};
  return kOps;
}

}  // namespace ds4::quant
