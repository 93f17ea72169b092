// Q2_K (84 B per 256 values: u8 scales[16]; u8 qs[64]; f16 d; f16 dmin), MODEL.md 4.5.
// Sub-block k (values 16k..16k+15, k = 8h + 2j + t) reads 2-bit levels from
// (qs[32h + 16t + l] >> 2j) & 3; value = d·(sc_k & 15)·q − dmin·(sc_k >> 4).
// d·sc·q is exact in f32, so fused and unfused forms agree and the AVX2 decode (a 4-entry table
// per sub-block, built with the same expression) equals the reference bit for bit.
// Called through kernels/quant.cpp.
#include "kernels/f16.h"
#include "kernels/quant_formats.h"

namespace ds4::quant {
namespace {

constexpr int kScalesAt = 0, kQsAt = 16, kDAt = 80, kDminAt = 82;

void q2_k_dequantize_ref(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kKValues; ++b, src += kQ2KBytes, dst += kKValues) {
    const float d = f16_to_f32(load_u16(src + kDAt));
    const float dmin = f16_to_f32(load_u16(src + kDminAt));
    for (int h = 0; h < 2; ++h) {
      for (int j = 0; j < 4; ++j) {
        for (int t = 0; t < 2; ++t) {
          const int k = 8 * h + 2 * j + t;
          const uint8_t sc = src[kScalesAt + k];
          const float dl = d * static_cast<float>(sc & 15);
          const float ml = dmin * static_cast<float>(sc >> 4);
          const uint8_t* q = src + kQsAt + 32 * h + 16 * t;
          for (int l = 0; l < 16; ++l)
            dst[16 * k + l] = dl * static_cast<float>((q[l] >> (2 * j)) & 3) - ml;
        }
      }
    }
  }
}

void q2_k_quantize(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kKValues; ++b, src += kKValues, dst += kQ2KBytes) {
    KQuantBlock kb;
    quantize_k_block(src, 16, 16, /*nmax=*/3, /*qmax=*/15, &kb);
    for (int k = 0; k < 16; ++k)
      dst[kScalesAt + k] = static_cast<uint8_t>(kb.sc[k] | (kb.m[k] << 4));
    uint8_t* qs = dst + kQsAt;
    for (int i = 0; i < 64; ++i) qs[i] = 0;
    for (int k = 0; k < 16; ++k) {
      const int h = k / 8, j = (k % 8) / 2, t = k % 2;
      for (int l = 0; l < 16; ++l)
        qs[32 * h + 16 * t + l] |= static_cast<uint8_t>(kb.levels[16 * k + l] << (2 * j));
    }
    store_u16(dst + kDAt, kb.d_bits);
    store_u16(dst + kDminAt, kb.dmin_bits);
  }
}

#ifdef __AVX2__
// Calls sink(offset, w0, w1) 16 times per block: values [offset, offset+8) and [offset+8, offset+16).
template <class Sink>
inline void q2_k_decode(const uint8_t* block, Sink&& sink) {
  // The 16 sub-block steps d·(sc & 15) and offsets dmin·(sc >> 4), computed 8 lanes at a time
  // (the same single f32 products as the reference).
  alignas(32) float dl[16], ml[16];
  {
    const __m256 d = _mm256_set1_ps(f16_to_f32(load_u16(block + kDAt)));
    const __m256 dmin = _mm256_set1_ps(f16_to_f32(load_u16(block + kDminAt)));
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + kScalesAt));
    const __m128i lo = _mm_and_si128(sc, _mm_set1_epi8(15));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(15));
    auto widen = [](__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)); };
    _mm256_store_ps(dl, _mm256_mul_ps(d, widen(lo)));
    _mm256_store_ps(dl + 8, _mm256_mul_ps(d, widen(_mm_srli_si128(lo, 8))));
    _mm256_store_ps(ml, _mm256_mul_ps(dmin, widen(hi)));
    _mm256_store_ps(ml + 8, _mm256_mul_ps(dmin, widen(_mm_srli_si128(hi, 8))));
  }
  const __m256 levels = _mm256_setr_ps(0, 1, 2, 3, 0, 0, 0, 0);
  const __m256i mask3 = _mm256_set1_epi8(3);
  for (int h = 0; h < 2; ++h) {
    const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kQsAt + 32 * h));
    for (int j = 0; j < 4; ++j) {
      const __m256i bits = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * j), mask3);
      const __m128i half[2] = {_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1)};
      for (int t = 0; t < 2; ++t) {
        const int k = 8 * h + 2 * j + t;
        // dl·q − ml for q = 0..3 (fused or not: dl·q is exact), picked per lane by q.
        const __m256 table = _mm256_fmsub_ps(_mm256_broadcast_ss(dl + k), levels,
                                             _mm256_broadcast_ss(ml + k));
        sink(16 * k, _mm256_permutevar8x32_ps(table, _mm256_cvtepu8_epi32(half[t])),
             _mm256_permutevar8x32_ps(table, _mm256_cvtepu8_epi32(_mm_srli_si128(half[t], 8))));
      }
    }
  }
}
#endif

void q2_k_dequantize(const uint8_t* src, float* dst, int64_t n) {
#ifdef __AVX2__
  decode16_dequantize<kQ2KBytes>([](const uint8_t* b, auto&& sink) { q2_k_decode(b, sink); }, src, dst, n);
#else
  q2_k_dequantize_ref(src, dst, n);
#endif
}

float q2_k_dot(const uint8_t* w, const float* x, int64_t n) {
#ifdef __AVX2__
  return decode16_dot<kQ2KBytes>([](const uint8_t* b, auto&& sink) { q2_k_decode(b, sink); }, w, x, n);
#else
  return dequantized_block_dot<kQ2KBytes>(q2_k_dequantize_ref, w, x, n);
#endif
}

}  // namespace

const FormatOps& q2_k_ops() {
  static constexpr FormatOps kOps{GgmlType::Q2_K, q2_k_dequantize_ref, q2_k_dequantize,
                                  q2_k_quantize, q2_k_dot};
  return kOps;
}

}  // namespace ds4::quant
