// Internal to kernels/quant*.cpp: the per-format routine table behind kernels/quant.h, byte-level
// block readers, and the shared least-squares scale/min fit of the K-quant quantisers.
// Invariant: every routine takes n as a whole number of blocks (checked once by the dispatcher
// in quant.cpp); blocks are read byte-wise (memcpy), so any source alignment is accepted.
// Called by quant.cpp (dispatch) and the quant_<format>.cpp files.
#pragma once
#include <cstdint>
#include <cstring>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "kernels/ggml_type.h"

namespace ds4::quant {

// One format's routines. `dequantize` must give bit-identical floats to `dequantize_ref`.
struct FormatOps {
  GgmlType type;
  void (*dequantize_ref)(const uint8_t* src, float* dst, int64_t n);
  void (*dequantize)(const uint8_t* src, float* dst, int64_t n);
  void (*quantize)(const float* src, uint8_t* dst, int64_t n);
  float (*dot)(const uint8_t* w, const float* x, int64_t n);
};

const FormatOps& f32_ops();
const FormatOps& f16_ops();
const FormatOps& bf16_ops();
const FormatOps& q8_0_ops();
const FormatOps& q2_k_ops();
const FormatOps& q4_k_ops();
const FormatOps& iq2_xxs_ops();

// Block geometry (bytes per block, values per block), the GGUF layouts of MODEL.md 4.5.
constexpr int kQ8_0Values = 32, kQ8_0Bytes = 34;      // f16 d; i8 q[32]
constexpr int kQ2KBytes = 84;                         // u8 scales[16]; u8 qs[64]; f16 d; f16 dmin
constexpr int kQ4KBytes = 144;                        // f16 d; f16 dmin; u8 scales[12]; u8 qs[128]
constexpr int kIQ2XXSBytes = 66;                      // f16 d; u16 qs[32]
constexpr int kKValues = 256;                         // QK_K

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Round half away from zero (C roundf), as ggml's nearest_int does for in-range values. Values
// beyond int's range saturate and NaN gives 0: converting them would be undefined (found by UBSan
// on extreme magnitudes); every caller clamps to a small range afterwards anyway.
inline int round_to_int(float v) {
  const float r = __builtin_roundf(v);
  if (r >= 2147483648.0f) return 2147483647;
  if (r < -2147483648.0f) return -2147483647 - 1;
  return r == r ? static_cast<int>(r) : 0;
}

inline int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Quantised affine fit of one sub-block: x_i ≈ scale·L_i − min with L_i ∈ [0, nmax],
// scale ≥ 0, min ≥ 0 (the K-quant formats store the offset as an unsigned subtrahend).
struct ScaleMin {
  float scale;
  float min;
};

// Searches the quantisation grid over a range of inverse scales and refines each candidate by
// unweighted least squares; returns the fit with the smallest squared error. n ≤ 32.
ScaleMin fit_scale_min(const float* x, int n, int nmax);

// One K-quant super-block quantised: f16 super-scales and, per sub-block, the integer scale and
// min in [0, qmax] and the levels L in [0, nmax]. Values dequantise as
// d·sc[j]·L[i] − dmin·m[j] (MODEL.md 4.5, Q2_K and Q4_K).
struct KQuantBlock {
  uint16_t d_bits = 0, dmin_bits = 0;
  int sc[16] = {}, m[16] = {};  // [n_sub]
  int levels[256] = {};         // [n_sub · sub_len]
};

// Fits every sub-block (fit_scale_min), derives d and dmin from the largest scale and min,
// rounds each sub-block's (scale, min) to integers (nearest, then the best of the ±1 neighbours
// by the resulting squared error) and assigns the levels. n_sub·sub_len = 256.
void quantize_k_block(const float* x, int n_sub, int sub_len, int nmax, int qmax,
                      KQuantBlock* out);

// Largest finite f16 (the stored super-block scales saturate there instead of becoming inf).
constexpr float kF16Max = 65504.0f;

#ifdef __AVX2__
inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 bytes at p (unsigned) -> 8 int32 lanes.
inline __m256i load_u8x8_epi32(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// Row dequantise and dot product for a super-block format whose AVX2 decoder hands out 16 values
// at a time: decode(block, sink) calls sink(at, w0, w1) with values [at, at + 16) as two vectors.
// Shared by Q2_K and Q4_K so both accumulate in the same order.
template <int kBlockBytes, typename Decode>
void decode16_dequantize(Decode decode, const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kKValues; ++b, src += kBlockBytes, dst += kKValues)
    decode(src, [dst](int at, __m256 w0, __m256 w1) {
      _mm256_storeu_ps(dst + at, w0);
      _mm256_storeu_ps(dst + at + 8, w1);
    });
}

template <int kBlockBytes, typename Decode>
float decode16_dot(Decode decode, const uint8_t* w, const float* x, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / kKValues; ++b, w += kBlockBytes, x += kKValues)
    decode(w, [&acc0, &acc1, x](int at, __m256 w0, __m256 w1) {
      acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + at), acc0);
      acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + at + 8), acc1);
    });
  return hsum_ps(_mm256_add_ps(acc0, acc1));
}
#endif

// Scalar fallback dot of a super-block format: dequantise each block with its reference, then dot.
template <int kBlockBytes>
float dequantized_block_dot(void (*dequantize_ref)(const uint8_t*, float*, int64_t), const uint8_t* w,
                            const float* x, int64_t n) {
  float sum = 0.0f, block[kKValues];
  for (int64_t b = 0; b < n / kKValues; ++b, w += kBlockBytes, x += kKValues) {
    dequantize_ref(w, block, kKValues);
    for (int i = 0; i < kKValues; ++i) sum += block[i] * x[i];
  }
  return sum;
}

}  // namespace ds4::quant
