// Q4_K (144 B per 256 values: f16 d; f16 dmin; u8 scales[12]; u8 qs[128]), MODEL.md 4.5.
// Eight 32-value sub-blocks with 6-bit scale and min packed into scales[12]; values
// 64c..64c+31 use the low nibbles of qs[32c..32c+31] (sub-block 2c), 64c+32.. the high nibbles.
// value = d·sc·q − dmin·m; d·sc·q is exact in f32, so the AVX2 fmsub decode equals the
// reference bit for bit. Called through kernels/quant.cpp.
#include "kernels/f16.h"
#include "kernels/quant_formats.h"

namespace ds4::quant {
namespace {

constexpr int kDAt = 0, kDminAt = 2, kScalesAt = 4, kQsAt = 16;

// 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
inline void scale_min(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

void q4_k_dequantize_ref(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kKValues; ++b, src += kQ4KBytes, dst += kKValues) {
    const float d = f16_to_f32(load_u16(src + kDAt));
    const float dmin = f16_to_f32(load_u16(src + kDminAt));
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = src + kQsAt + 32 * c;
      for (int half = 0; half < 2; ++half) {
        int sc, m;
        scale_min(2 * c + half, src + kScalesAt, &sc, &m);
        const float dl = d * static_cast<float>(sc);
        const float ml = dmin * static_cast<float>(m);
        for (int l = 0; l < 32; ++l)
          dst[64 * c + 32 * half + l] = dl * static_cast<float>((q[l] >> (4 * half)) & 0xF) - ml;
      }
    }
  }
}

void pack_scales(const KQuantBlock& kb, uint8_t* s) {
  for (int i = 0; i < 12; ++i) s[i] = 0;
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>(kb.sc[j]);
    s[j + 4] = static_cast<uint8_t>(kb.m[j]);
  }
  for (int j = 4; j < 8; ++j) {
    s[j + 4] = static_cast<uint8_t>((kb.sc[j] & 0xF) | ((kb.m[j] & 0xF) << 4));
    s[j - 4] |= static_cast<uint8_t>((kb.sc[j] >> 4) << 6);
    s[j] |= static_cast<uint8_t>((kb.m[j] >> 4) << 6);
  }
}

void q4_k_quantize(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kKValues; ++b, src += kKValues, dst += kQ4KBytes) {
    KQuantBlock kb;
    quantize_k_block(src, 8, 32, /*nmax=*/15, /*qmax=*/63, &kb);
    store_u16(dst + kDAt, kb.d_bits);
    store_u16(dst + kDminAt, kb.dmin_bits);
    pack_scales(kb, dst + kScalesAt);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        dst[kQsAt + 32 * c + l] = static_cast<uint8_t>(kb.levels[64 * c + l] |
                                                       (kb.levels[64 * c + 32 + l] << 4));
  }
}

#ifdef __AVX2__
// The 8 scales and 8 mins of scale_min() at once, as bytes: the same bit fields, gathered with
// 32-bit masks (bytes 0..3 of s hold sc 0..3 plus the top bits of sc 4..7, bytes 4..7 the same
// for the mins, bytes 8..11 the low nibbles of sc/m 4..7).
inline void unpack_scales_mins(const uint8_t* s, uint64_t* sc8, uint64_t* m8) {
  const uint32_t u0 = load_u32(s), u1 = load_u32(s + 4), u2 = load_u32(s + 8);
  const uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
  const uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
  *sc8 = (u0 & 0x3f3f3f3fu) | (static_cast<uint64_t>(sc_hi) << 32);
  *m8 = (u1 & 0x3f3f3f3fu) | (static_cast<uint64_t>(m_hi) << 32);
}

// Calls sink(offset, w0, w1) 16 times per block: values [offset, offset+8) and [offset+8, offset+16).
template <class Sink>
inline void q4_k_decode(const uint8_t* block, Sink&& sink) {
  alignas(32) float dl[8], ml[8];  // d·sc_j and dmin·m_j, the reference's f32 products
  {
    uint64_t sc8, m8;
    unpack_scales_mins(block + kScalesAt, &sc8, &m8);
    auto widen = [](uint64_t bytes) {
      return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(bytes))));
    };
    _mm256_store_ps(dl, _mm256_mul_ps(_mm256_set1_ps(f16_to_f32(load_u16(block + kDAt))), widen(sc8)));
    _mm256_store_ps(ml, _mm256_mul_ps(_mm256_set1_ps(f16_to_f32(load_u16(block + kDminAt))), widen(m8)));
  }
  const __m256i mask4 = _mm256_set1_epi8(0x0F);
  for (int c = 0; c < 4; ++c) {
    const __m256i qv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kQsAt + 32 * c));
    const __m256i nib[2] = {_mm256_and_si256(qv, mask4),
                            _mm256_and_si256(_mm256_srli_epi16(qv, 4), mask4)};
    for (int half = 0; half < 2; ++half) {
      const __m256 d1 = _mm256_broadcast_ss(dl + 2 * c + half);
      const __m256 m1 = _mm256_broadcast_ss(ml + 2 * c + half);
      const __m128i part[2] = {_mm256_castsi256_si128(nib[half]),
                               _mm256_extracti128_si256(nib[half], 1)};
      for (int p = 0; p < 2; ++p) {
        const __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(part[p]));
        const __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(part[p], 8)));
        // d1·q is exact, so the fused d1·q − m1 rounds exactly like the reference.
        sink(64 * c + 32 * half + 16 * p, _mm256_fmsub_ps(d1, q0, m1), _mm256_fmsub_ps(d1, q1, m1));
      }
    }
  }
}
#endif

void q4_k_dequantize(const uint8_t* src, float* dst, int64_t n) {
#ifdef __AVX2__
  decode16_dequantize<kQ4KBytes>([](const uint8_t* b, auto&& sink) { q4_k_decode(b, sink); }, src, dst, n);
#else
  q4_k_dequantize_ref(src, dst, n);
#endif
}

float q4_k_dot(const uint8_t* w, const float* x, int64_t n) {
#ifdef __AVX2__
  return decode16_dot<kQ4KBytes>([](const uint8_t* b, auto&& sink) { q4_k_decode(b, sink); }, w, x, n);
#else
  return dequantized_block_dot<kQ4KBytes>(q4_k_dequantize_ref, w, x, n);
#endif
}

}  // namespace

const FormatOps& q4_k_ops() {
  static constexpr FormatOps kOps{GgmlType::Q4_K, q4_k_dequantize_ref, q4_k_dequantize,
                                  q4_k_quantize, q4_k_dot};
  return kOps;
}

}  // namespace ds4::quant
