// IQ2_XXS (66 B per 256 values: f16 d; u16 qs[32]), MODEL.md 4.5. Per 32-value sub-block b the
// bytes qs[4b..4b+3] are two u32: A = four grid indices (one per 8-value group), B = four 7-bit
// sign indices (bits 0..27) and a 4-bit scale s (bits 28..31); value = d·(0.5+s)·0.25 ·
// grid[A byte l][j] · (−1 if bit j of ksigns[(B >> 7l) & 127]). All products are exact in f32,
// so the table-driven AVX2 decode equals the reference bit for bit. The quantiser searches the
// sub-block scale and the nearest grid point per group (L2). Called through kernels/quant.cpp.
#include <array>
#include <bit>
#include <cmath>

#include "kernels/f16.h"
#include "kernels/quant_formats.h"

namespace ds4::quant {
namespace {

constexpr std::array<uint64_t, 256> kGrid = {
#include "kernels/iq2xxs_grid.inc"
};

// ggml's ksigns_iq2xs: the 7 stored sign bits plus an 8th bit that makes the popcount even
// (every group carries an even number of negative values).
constexpr uint8_t ksigns(uint32_t s7) {
  return static_cast<uint8_t>(s7 | ((std::popcount(s7 & 127u) & 1u) << 7));
}

constexpr uint8_t grid_byte(int entry, int j) {
  return static_cast<uint8_t>(kGrid[entry] >> (8 * j));
}

// Derived lookup tables (all computed at compile time from kGrid and the parity rule).
struct Tables {
  alignas(32) float grid[256][8];        // magnitudes as floats, [entry][element]
  alignas(32) float grid_t[8][256];      // transposed, [element][entry] (quantiser search)
  alignas(32) float norm2[256];          // Σ_j grid[e][j]²
  alignas(32) uint32_t sign_bits[128][8];  // 0x80000000 where element j is negative
};

constexpr Tables make_tables() {
  Tables t{};
  for (int e = 0; e < 256; ++e) {
    float n2 = 0.0f;
    for (int j = 0; j < 8; ++j) {
      const float g = static_cast<float>(grid_byte(e, j));
      t.grid[e][j] = g;
      t.grid_t[j][e] = g;
      n2 += g * g;
    }
    t.norm2[e] = n2;
  }
  for (uint32_t s = 0; s < 128; ++s)
    for (int j = 0; j < 8; ++j) t.sign_bits[s][j] = ((ksigns(s) >> j) & 1u) ? 0x80000000u : 0u;
  return t;
}

constexpr Tables kTables = make_tables();
constexpr int kSubBytes = 8;  // bytes of qs per 32-value sub-block

inline float sub_block_scale(float d, uint32_t b_word) {
  return d * (0.5f + static_cast<float>(b_word >> 28)) * 0.25f;
}

void iq2_xxs_dequantize_ref(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t blk = 0; blk < n / kKValues; ++blk, src += kIQ2XXSBytes, dst += kKValues) {
    const float d = f16_to_f32(load_u16(src));
    for (int ib = 0; ib < 8; ++ib) {
      const uint32_t a = load_u32(src + 2 + kSubBytes * ib);
      const uint32_t b = load_u32(src + 2 + kSubBytes * ib + 4);
      const float db = sub_block_scale(d, b);
      for (int l = 0; l < 4; ++l) {
        const int entry = (a >> (8 * l)) & 255;
        const uint8_t signs = ksigns((b >> (7 * l)) & 127);
        for (int j = 0; j < 8; ++j)
          dst[32 * ib + 8 * l + j] = db * static_cast<float>(grid_byte(entry, j)) *
                                     ((signs >> j) & 1 ? -1.0f : 1.0f);
      }
    }
  }
}

// ---- quantiser ---------------------------------------------------------------------------------

// One 8-value group prepared for the grid search: the stored sign pattern (even parity; when the
// data has an odd number of negatives the smallest-magnitude element takes the wrong sign) and
// the target magnitudes t_j = s_j·x_j that the grid point (times the scale) should match.
struct GroupTarget {
  float t[8];
  uint8_t sign_mask;
  alignas(32) float dots[256];  // Σ_j grid[e][j]·t_j for every grid entry e
};

void prepare_group(const float* x, GroupTarget* g) {
  uint32_t mask = 0;
  int smallest = 0;
  for (int j = 0; j < 8; ++j) {
    if (x[j] < 0.0f) mask |= 1u << j;
    g->t[j] = std::fabs(x[j]);
    if (g->t[j] < g->t[smallest]) smallest = j;
  }
  if (std::popcount(mask) & 1) {
    mask ^= 1u << smallest;
    g->t[smallest] = -g->t[smallest];
  }
  g->sign_mask = static_cast<uint8_t>(mask);
  // Element-major so the loop over the 256 entries vectorises; per entry the sum runs j = 0..7.
  for (int e = 0; e < 256; ++e) g->dots[e] = 0.0f;
  for (int j = 0; j < 8; ++j)
    for (int e = 0; e < 256; ++e) g->dots[e] = std::fma(kTables.grid_t[j][e], g->t[j], g->dots[e]);
}

// Grid entry minimising |σ·grid[e] − t|² (equivalently σ·norm2[e] − 2·dots[e], σ > 0);
// ties keep the lowest entry. *err receives σ²·norm2 − 2σ·dots of the winner.
int best_entry(const GroupTarget& g, float sigma, float* err) {
  int best = 0;
  float best_v = INFINITY;
#ifdef __AVX2__
  const __m256 s = _mm256_set1_ps(sigma), minus2 = _mm256_set1_ps(-2.0f);
  __m256 vbest = _mm256_set1_ps(INFINITY);
  __m256i vidx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), vbest_idx = vidx;
  for (int e = 0; e < 256; e += 8) {
    const __m256 v = _mm256_fmadd_ps(s, _mm256_load_ps(kTables.norm2 + e),
                                     _mm256_mul_ps(minus2, _mm256_load_ps(g.dots + e)));
    const __m256 lt = _mm256_cmp_ps(v, vbest, _CMP_LT_OQ);
    vbest = _mm256_blendv_ps(vbest, v, lt);
    vbest_idx = _mm256_blendv_epi8(vbest_idx, vidx, _mm256_castps_si256(lt));
    vidx = _mm256_add_epi32(vidx, _mm256_set1_epi32(8));
  }
  alignas(32) float lane_v[8];
  alignas(32) int32_t lane_i[8];
  _mm256_store_ps(lane_v, vbest);
  _mm256_store_si256(reinterpret_cast<__m256i*>(lane_i), vbest_idx);
  for (int k = 0; k < 8; ++k)
    if (lane_v[k] < best_v || (lane_v[k] == best_v && lane_i[k] < best)) {
      best_v = lane_v[k];
      best = lane_i[k];
    }
#else
  for (int e = 0; e < 256; ++e) {
    const float v = std::fma(sigma, kTables.norm2[e], -2.0f * g.dots[e]);
    if (v < best_v) {
      best_v = v;
      best = e;
    }
  }
#endif
  *err = sigma * best_v;
  return best;
}

// Squared error (up to the constant Σt²) of a sub-block coded with scale σ.
float sub_block_error(const GroupTarget* groups, float sigma) {
  float total = 0.0f, err;
  for (int l = 0; l < 4; ++l) {
    best_entry(groups[l], sigma, &err);
    total += err;
  }
  return total;
}

// Best continuous scale of a sub-block: a geometric sweep of σ from 0.6·amax/43 (largest
// magnitude slightly clipped) to amax/8 (everything on the smallest magnitude, e.g. a constant
// sub-block), then least-squares refits of σ for the winning grid points while they improve.
float best_sub_block_scale(const GroupTarget* groups, float amax) {
  constexpr int kSweep = 20;
  constexpr float kLow = 0.6f / 43.0f, kHigh = 1.0f / 8.0f;
  if (amax <= 0.0f) return 0.0f;
  float best_sigma = 0.0f, best_err = INFINITY;
  for (int k = 0; k < kSweep; ++k) {
    const float sigma =
        amax * kLow * std::pow(kHigh / kLow, static_cast<float>(k) / (kSweep - 1));
    const float err = sub_block_error(groups, sigma);
    if (err < best_err) {
      best_err = err;
      best_sigma = sigma;
    }
  }
  for (int iter = 0; iter < 2; ++iter) {
    float num = 0.0f, den = 0.0f, err;
    for (int l = 0; l < 4; ++l) {
      const int e = best_entry(groups[l], best_sigma, &err);
      num += groups[l].dots[e];
      den += kTables.norm2[e];
    }
    const float refit = den > 0.0f ? num / den : 0.0f;
    if (!(refit > 0.0f)) break;
    const float refit_err = sub_block_error(groups, refit);
    if (!(refit_err < best_err)) break;
    best_err = refit_err;
    best_sigma = refit;
  }
  return best_sigma;
}

// Chooses the 4-bit scale s of one sub-block for the stored d and writes its 8 bytes.
void encode_sub_block(const GroupTarget* groups, float sigma, float d, uint8_t* out) {
  int best_s = 0;
  if (d > 0.0f) {
    // Clamped before the conversion (huge or NaN guesses were undefined, found by UBSan); every
    // guess <= -3 or >= 17 already gave an empty search range, and still does.
    const float guess = std::floor((sigma * 8.0f / d - 1.0f) * 0.5f);
    const int s_guess = guess >= -3.0f ? (guess <= 17.0f ? static_cast<int>(guess) : 17) : -3;
    float best_err = INFINITY;
    for (int s = std::max(0, s_guess - 1); s <= std::min(15, s_guess + 2); ++s) {
      const float err = sub_block_error(groups, d * (0.5f + static_cast<float>(s)) * 0.25f);
      if (err < best_err) {
        best_err = err;
        best_s = s;
      }
    }
  }
  const float db = d * (0.5f + static_cast<float>(best_s)) * 0.25f;
  uint32_t a = 0, b = static_cast<uint32_t>(best_s) << 28;
  for (int l = 0; l < 4; ++l) {
    float err;
    const int e = d > 0.0f ? best_entry(groups[l], db, &err) : 0;
    a |= static_cast<uint32_t>(e) << (8 * l);
    b |= static_cast<uint32_t>(groups[l].sign_mask & 127) << (7 * l);
  }
  store_u32(out, a);
  store_u32(out + 4, b);
}

void iq2_xxs_quantize(const float* src, uint8_t* dst, int64_t n) {
  GroupTarget groups[8][4];
  float sigma[8];
  for (int64_t blk = 0; blk < n / kKValues; ++blk, src += kKValues, dst += kIQ2XXSBytes) {
    float top_sigma = 0.0f;
    for (int ib = 0; ib < 8; ++ib) {
      float amax = 0.0f;
      for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(src[32 * ib + i]));
      for (int l = 0; l < 4; ++l) prepare_group(src + 32 * ib + 8 * l, &groups[ib][l]);
      sigma[ib] = best_sub_block_scale(groups[ib], amax);
      top_sigma = std::fmax(top_sigma, sigma[ib]);
    }
    // The largest sub-block scale d·(0.5+15)·0.25 = d·31/8 should reach the largest σ.
    const uint16_t d_bits = f32_to_f16(std::fmin(top_sigma * 8.0f / 31.0f, kF16Max));
    const float d = f16_to_f32(d_bits);
    store_u16(dst, d_bits);
    for (int ib = 0; ib < 8; ++ib) encode_sub_block(groups[ib], sigma[ib], d, dst + 2 + kSubBytes * ib);
  }
}

// ---- AVX2 decode, dequantise, dot ---------------------------------------------------------------

#ifdef __AVX2__
// Calls sink(offset, w) for the 32 vectors of 8 values of one block, offset = first value index.
template <class Sink>
inline void iq2_xxs_decode(const uint8_t* block, Sink&& sink) {
  const float d = f16_to_f32(load_u16(block));
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t a = load_u32(block + 2 + kSubBytes * ib);
    const uint32_t b = load_u32(block + 2 + kSubBytes * ib + 4);
    const __m256 db = _mm256_set1_ps(sub_block_scale(d, b));
    for (int l = 0; l < 4; ++l) {
      const __m256 mag = _mm256_load_ps(kTables.grid[(a >> (8 * l)) & 255]);
      const __m256 sign = _mm256_castsi256_ps(_mm256_load_si256(
          reinterpret_cast<const __m256i*>(kTables.sign_bits[(b >> (7 * l)) & 127])));
      sink(32 * ib + 8 * l, _mm256_xor_ps(_mm256_mul_ps(db, mag), sign));
    }
  }
}
#endif

void iq2_xxs_dequantize(const uint8_t* src, float* dst, int64_t n) {
#ifdef __AVX2__
  for (int64_t blk = 0; blk < n / kKValues; ++blk, src += kIQ2XXSBytes, dst += kKValues)
    iq2_xxs_decode(src, [dst](int at, __m256 w) { _mm256_storeu_ps(dst + at, w); });
#else
  iq2_xxs_dequantize_ref(src, dst, n);
#endif
}

float iq2_xxs_dot(const uint8_t* w, const float* x, int64_t n) {
#ifdef __AVX2__
  // Per sub-block Σ ±grid·x first, times the sub-block scale once (one multiply per 32 values
  // instead of per 8; within the stated 1e-5·Σ|w·x| of the reference).
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (int64_t blk = 0; blk < n / kKValues; ++blk, w += kIQ2XXSBytes, x += kKValues) {
    const float d = f16_to_f32(load_u16(w));
    for (int ib = 0; ib < 8; ++ib) {
      const uint32_t a = load_u32(w + 2 + kSubBytes * ib);
      const uint32_t b = load_u32(w + 2 + kSubBytes * ib + 4);
      __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
      for (int l = 0; l < 4; ++l) {
        const __m256 mag = _mm256_load_ps(kTables.grid[(a >> (8 * l)) & 255]);
        const __m256 sign = _mm256_castsi256_ps(_mm256_load_si256(
            reinterpret_cast<const __m256i*>(kTables.sign_bits[(b >> (7 * l)) & 127])));
        const __m256 g = _mm256_xor_ps(mag, sign);
        const __m256 xv = _mm256_loadu_ps(x + 32 * ib + 8 * l);
        if (l & 1) s1 = _mm256_fmadd_ps(g, xv, s1);
        else s0 = _mm256_fmadd_ps(g, xv, s0);
      }
      const __m256 db = _mm256_set1_ps(sub_block_scale(d, b));
      if (ib & 1) acc1 = _mm256_fmadd_ps(db, _mm256_add_ps(s0, s1), acc1);
      else acc0 = _mm256_fmadd_ps(db, _mm256_add_ps(s0, s1), acc0);
    }
  }
  return hsum_ps(_mm256_add_ps(acc0, acc1));
#else
  return dequantized_block_dot<kIQ2XXSBytes>(iq2_xxs_dequantize_ref, w, x, n);
#endif
}

}  // namespace

const FormatOps& iq2_xxs_ops() {
  static constexpr FormatOps kOps{GgmlType::IQ2_XXS, iq2_xxs_dequantize_ref, iq2_xxs_dequantize,
                                  iq2_xxs_quantize, iq2_xxs_dot};
  return kOps;
}

}  // namespace ds4::quant
