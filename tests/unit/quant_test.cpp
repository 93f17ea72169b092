// Tests of kernels/quant.h for F32, F16, BF16, Q8_0, Q2_K, Q4_K, IQ2_XXS: quantise→dequantise
// error bounds on seeded Gaussian data, vectorised dequantise == scalar reference bit for bit,
// dot_row vs the f64 dot_row_ref within |Δ| ≤ 1e-5·Σ|w·x|, hand-built blocks decoded by the
// layout of MODEL.md 4.5, and edge cases (zero, constant, huge, tiny rows; one and many blocks).
// The cross-check against the independent gguf package is tests/python/test_quant_gguf.py.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numbers>
#include <random>
#include <vector>

#include "kernels/f16.h"
#include "kernels/ggml_type.h"
#include "kernels/quant.h"

namespace ds4 {
namespace {

constexpr GgmlType kAllTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16,
                                  GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q4_K,
                                  GgmlType::IQ2_XXS};
constexpr GgmlType kBlockTypes[] = {GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q4_K,
                                    GgmlType::IQ2_XXS};

// Relative RMS error bound of quantise→dequantise on N(0,1) data, per type. Measured values
// (printed by the test) are well inside: see the RoundTripGaussian output.
double rms_bound(GgmlType t) {
  switch (t) {
    case GgmlType::F32: return 0.0;
    case GgmlType::F16: return 3e-4;   // 2^-11 relative rounding, rms ≈ 2^-11/√3
    case GgmlType::BF16: return 3e-3;  // 2^-8 relative rounding
    case GgmlType::Q8_0: return 0.008;
    case GgmlType::Q4_K: return 0.09;
    case GgmlType::Q2_K: return 0.38;
    case GgmlType::IQ2_XXS: return 0.45;
    default: return 0.0;
  }
}

// Deterministic N(0, 1) samples (Box–Muller over mt19937_64, so the data is the same everywhere).
std::vector<float> gaussian(int64_t n, uint64_t seed, float sigma = 1.0f) {
  std::mt19937_64 rng(seed);
  auto uniform = [&rng] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1p-53; };
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform())), a = 2.0 * std::numbers::pi * uniform();
    v[i] = static_cast<float>(sigma * r * std::cos(a));
    if (i + 1 < n) v[i + 1] = static_cast<float>(sigma * r * std::sin(a));
  }
  return v;
}

uint64_t row_bytes(GgmlType t, int64_t n) { return *ggml_row_bytes(t, static_cast<uint64_t>(n)); }

std::vector<uint8_t> quantize(GgmlType t, const std::vector<float>& x) {
  std::vector<uint8_t> q(row_bytes(t, static_cast<int64_t>(x.size())));
  quantize_row(t, x.data(), q.data(), static_cast<int64_t>(x.size()));
  return q;
}

std::vector<float> dequantize(GgmlType t, const std::vector<uint8_t>& q, int64_t n) {
  std::vector<float> y(n);
  dequantize_row(t, q.data(), y.data(), n);
  return y;
}

double rel_rms(const std::vector<float>& x, const std::vector<float>& y) {
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
    den += static_cast<double>(x[i]) * x[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Random valid blocks: random bytes everywhere, with every f16 scale field overwritten by a
// random finite f16 of moderate magnitude (so values and dot products stay finite).
std::vector<uint8_t> random_blocks(GgmlType t, int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> q(row_bytes(t, n));
  for (auto& b : q) b = static_cast<uint8_t>(rng());
  auto put_scale = [&](uint8_t* p) {
    const float v = std::ldexp(static_cast<float>(rng() % 2048) / 1024.0f - 1.0f,
                               static_cast<int>(rng() % 16) - 12);
    const uint16_t h = f32_to_f16(v);
    std::memcpy(p, &h, 2);
  };
  const auto& info = ggml_type_info(t);
  for (uint64_t off = 0; off < q.size(); off += info.block_bytes) {
    switch (t) {
      case GgmlType::Q8_0: put_scale(&q[off]); break;
      case GgmlType::Q2_K: put_scale(&q[off + 80]); put_scale(&q[off + 82]); break;
      case GgmlType::Q4_K: put_scale(&q[off]); put_scale(&q[off + 2]); break;
      case GgmlType::IQ2_XXS: put_scale(&q[off]); break;
      case GgmlType::F16: put_scale(&q[off]); break;
      case GgmlType::BF16: {  // a random bf16 of moderate magnitude (|v| < 2^4)
        const uint16_t h = static_cast<uint16_t>((rng() & 0x807f) | ((0x70 + rng() % 20) << 7));
        std::memcpy(&q[off], &h, 2);
        break;
      }
      case GgmlType::F32: {
        float v = static_cast<float>(static_cast<int32_t>(rng() % 2000001) - 1000000) * 1e-3f;
        std::memcpy(&q[off], &v, 4);
        break;
      }
      default: break;
    }
  }
  return q;
}

void expect_bits_equal(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(f32_bits(a[i]), f32_bits(b[i])) << what << " differs at " << i << ": " << a[i]
                                              << " vs " << b[i];
}

// |dot − ref| ≤ 1e-5·Σ|w·x| (+ a denormal-sized floor for all-zero rows).
void expect_dot_close(GgmlType t, const std::vector<uint8_t>& q, const std::vector<float>& x) {
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<float> w(n);
  dequantize_row_ref(t, q.data(), w.data(), n);
  double abs_sum = 0.0;
  for (int64_t i = 0; i < n; ++i) abs_sum += std::fabs(static_cast<double>(w[i]) * x[i]);
  const double ref = dot_row_ref(t, q.data(), x.data(), n);
  const double got = dot_row(t, q.data(), x.data(), n);
  EXPECT_LE(std::fabs(got - ref), 1e-5 * abs_sum + 1e-30)
      << ggml_type_name(t) << " n=" << n << " got " << got << " ref " << ref;
}

TEST(Quant, SupportedTypes) {
  for (GgmlType t : kAllTypes) EXPECT_TRUE(quant_supported(t)) << ggml_type_name(t);
  EXPECT_FALSE(quant_supported(GgmlType::Q8_K));
  EXPECT_FALSE(quant_supported(GgmlType::I32));
}

TEST(Quant, RoundTripGaussian) {
  constexpr int64_t kN = 64 * 256;
  const std::vector<float> x = gaussian(kN, 42);
  for (GgmlType t : kAllTypes) {
    const std::vector<float> y = dequantize(t, quantize(t, x), kN);
    const double err = rel_rms(x, y);
    std::printf("  %-8s relative RMS error %.6f (bound %.4f)\n",
                std::string(ggml_type_name(t)).c_str(), err, rms_bound(t));
    EXPECT_LE(err, rms_bound(t)) << ggml_type_name(t);
  }
}

TEST(Quant, PlainFloatRoundingIsNearestEven) {
  const std::vector<float> x = gaussian(4096, 7);
  const std::vector<uint8_t> h = quantize(GgmlType::F16, x), b = quantize(GgmlType::BF16, x);
  for (size_t i = 0; i < x.size(); ++i) {
    uint16_t hv, bv;
    std::memcpy(&hv, &h[2 * i], 2);
    std::memcpy(&bv, &b[2 * i], 2);
    EXPECT_LE(std::fabs(f16_to_f32(hv) - x[i]), std::fabs(x[i]) * 0x1p-11f + 0x1p-25f);
    EXPECT_LE(std::fabs(bf16_to_f32(bv) - x[i]), std::fabs(x[i]) * 0x1p-8f);
  }
  // Ties: 1 + 2^-11 is halfway between f16 1 and 1 + 2^-10 → even (1); 1 + 3·2^-11 → 1 + 2^-9.
  const std::vector<float> ties = {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 1.0f + 0x1p-8f,
                                   1.0f + 3 * 0x1p-8f};
  const std::vector<float> ht = dequantize(GgmlType::F16, quantize(GgmlType::F16, ties), 4);
  const std::vector<float> bt = dequantize(GgmlType::BF16, quantize(GgmlType::BF16, ties), 4);
  EXPECT_EQ(ht[0], 1.0f);
  EXPECT_EQ(ht[1], 1.0f + 0x1p-9f);
  EXPECT_EQ(bt[2], 1.0f);
  EXPECT_EQ(bt[3], 1.0f + 0x1p-6f);
}

TEST(Quant, DequantizeMatchesReferenceOnQuantizedData) {
  for (int64_t n : {256, 256 * 37}) {
    const std::vector<float> x = gaussian(n, 1000 + n);
    for (GgmlType t : kAllTypes) {
      const std::vector<uint8_t> q = quantize(t, x);
      std::vector<float> ref(n);
      dequantize_row_ref(t, q.data(), ref.data(), n);
      expect_bits_equal(dequantize(t, q, n), ref, std::string(ggml_type_name(t)).c_str());
    }
  }
}

TEST(Quant, DequantizeMatchesReferenceOnRandomBlocks) {
  constexpr int64_t kN = 256 * 512;  // 512 blocks of 256: every grid and sign index appears
  for (GgmlType t : kAllTypes) {
    const std::vector<uint8_t> q = random_blocks(t, kN, 99);
    std::vector<float> ref(kN);
    dequantize_row_ref(t, q.data(), ref.data(), kN);
    for (float v : ref) ASSERT_TRUE(std::isfinite(v)) << ggml_type_name(t);
    expect_bits_equal(dequantize(t, q, kN), ref, std::string(ggml_type_name(t)).c_str());
  }
}

TEST(Quant, F16AllBitPatterns) {
  std::vector<uint8_t> q(2 * 65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t v = static_cast<uint16_t>(h);
    std::memcpy(&q[2 * h], &v, 2);
  }
  std::vector<float> ref(65536), got(65536);
  dequantize_row_ref(GgmlType::F16, q.data(), ref.data(), 65536);
  dequantize_row(GgmlType::F16, q.data(), got.data(), 65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    if (std::isnan(ref[h])) {
      EXPECT_TRUE(std::isnan(got[h])) << h;
      continue;
    }
    ASSERT_EQ(f32_bits(ref[h]), f32_bits(got[h])) << "f16 bits " << h;
    // f32 → f16 → f32 round trip of every non-NaN half is the identity.
    ASSERT_EQ(f32_to_f16(ref[h]), h) << "f16 bits " << h;
  }
}

TEST(Quant, DotMatchesReference) {
  for (int64_t n : {256, 256 * 16, 256 * 64}) {
    const std::vector<float> x = gaussian(n, 5 + n);
    for (GgmlType t : kAllTypes) {
      expect_dot_close(t, quantize(t, gaussian(n, 77 + n)), x);
      expect_dot_close(t, random_blocks(t, n, 3 + n), x);
    }
  }
  // Plain types also accept lengths that are not multiples of 8 (scalar tail).
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16}) {
    const std::vector<float> x = gaussian(45, 8);
    expect_dot_close(t, quantize(t, gaussian(45, 9)), x);
  }
}

TEST(Quant, ZeroRows) {
  for (GgmlType t : kAllTypes) {
    const int64_t n = 512;
    const std::vector<float> zeros(n, 0.0f), x = gaussian(n, 11);
    const std::vector<uint8_t> q = quantize(t, zeros);
    for (float v : dequantize(t, q, n)) ASSERT_EQ(v, 0.0f) << ggml_type_name(t);
    EXPECT_EQ(dot_row(t, q.data(), x.data(), n), 0.0f) << ggml_type_name(t);
    EXPECT_EQ(dot_row_ref(t, q.data(), x.data(), n), 0.0f) << ggml_type_name(t);
  }
}

TEST(Quant, ConstantRows) {
  for (float c : {0.37f, -1.5f, 1e-2f}) {
    const int64_t n = 256;
    const std::vector<float> x(n, c);
    for (GgmlType t : kAllTypes) {
      // Q8_0, K-quants: the value is an exact level of an f16 scale (relative error ≤ 2^-9);
      // IQ2_XXS: a magnitude from {8, 25, 43} times a 4-bit sub-scale (loose 0.1). For c = 1e-2
      // the K-quant super-scale d ≈ c/15/63 ≈ 1e-5 is an f16 subnormal (step 6e-8): 1e-2.
      double tol = t == GgmlType::BF16 ? 4e-3 : 2e-3;
      if (t == GgmlType::IQ2_XXS) tol = 0.1;
      if (c == 1e-2f && (t == GgmlType::Q2_K || t == GgmlType::Q4_K)) tol = 1e-2;
      const std::vector<float> y = dequantize(t, quantize(t, x), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_NEAR(y[i], c, std::fabs(c) * tol) << ggml_type_name(t) << " c=" << c << " i=" << i;
    }
  }
}

TEST(Quant, ScaledRowsKeepTheirRelativeError) {
  // The formats are scale-invariant while the f16 super-scales stay normal: huge and small rows
  // keep the unit-variance error bound (small rows get 1.5× for f16 subnormal scale steps).
  constexpr int64_t kN = 256 * 16;
  for (float sigma : {3000.0f, 1e-3f}) {
    const std::vector<float> x = gaussian(kN, 21, sigma);
    for (GgmlType t : kAllTypes) {
      const double err = rel_rms(x, dequantize(t, quantize(t, x), kN));
      EXPECT_LE(err, rms_bound(t) * 1.5 + 1e-12) << ggml_type_name(t) << " sigma " << sigma;
    }
  }
}

TEST(Quant, ExtremeMagnitudesStayFinite) {
  // Beyond the f16 scale range the block formats saturate (huge) or flush to zero (tiny),
  // but every value stays finite and never exceeds the input's largest magnitude by much.
  constexpr int64_t kN = 512;
  for (float sigma : {1e30f, 1e-30f}) {
    const std::vector<float> x = gaussian(kN, 31, sigma);
    float amax = 0.0f;
    for (float v : x) amax = std::fmax(amax, std::fabs(v));
    for (GgmlType t : kBlockTypes) {
      for (float v : dequantize(t, quantize(t, x), kN)) {
        ASSERT_TRUE(std::isfinite(v)) << ggml_type_name(t);
        ASSERT_LE(std::fabs(v), 2.0f * amax) << ggml_type_name(t);
      }
    }
  }
}

TEST(Quant, OneBlockAndManyBlocksAgree) {
  // Quantising a long row equals quantising each block on its own (blocks are independent).
  for (GgmlType t : kBlockTypes) {
    const int64_t block = ggml_type_info(t).block_values, bytes = ggml_type_info(t).block_bytes;
    const std::vector<float> x = gaussian(block * 9, 123);
    const std::vector<uint8_t> whole = quantize(t, x);
    for (int b = 0; b < 9; ++b) {
      const std::vector<float> part(x.begin() + b * block, x.begin() + (b + 1) * block);
      const std::vector<uint8_t> q = quantize(t, part);
      ASSERT_EQ(0, std::memcmp(q.data(), whole.data() + b * bytes, bytes)) << ggml_type_name(t);
    }
  }
}

TEST(Quant, QuantizeIsDeterministic) {
  const std::vector<float> x = gaussian(256 * 4, 555);
  for (GgmlType t : kAllTypes) EXPECT_EQ(quantize(t, x), quantize(t, x)) << ggml_type_name(t);
}

// ---- hand-built blocks, decoded from the layout description (MODEL.md 4.5) --------------------

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

TEST(QuantLayout, Q8_0) {
  std::vector<uint8_t> q(34);
  put_f16(&q[0], 0.5f);
  for (int j = 0; j < 32; ++j) q[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
  const std::vector<float> y = dequantize(GgmlType::Q8_0, q, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], 0.5f * static_cast<float>(j - 16));
}

TEST(QuantLayout, Q2_K) {
  std::vector<uint8_t> q(84, 0);
  for (int k = 0; k < 16; ++k) q[k] = static_cast<uint8_t>((k & 15) | ((15 - k) << 4));
  // Level 3 only for value 128h + 32j + 16t + l with h=1, j=2, t=1, l=5 → byte qs[32+16+5] bits 4,5.
  q[16 + 32 + 16 + 5] = 3 << 4;
  put_f16(&q[80], 2.0f);
  put_f16(&q[82], 0.25f);
  const std::vector<float> y = dequantize(GgmlType::Q2_K, q, 256);
  for (int v = 0; v < 256; ++v) {
    const int k = v / 16;
    const float level = v == 128 + 64 + 16 + 5 ? 3.0f : 0.0f;
    EXPECT_EQ(y[v], 2.0f * static_cast<float>(k) * level - 0.25f * static_cast<float>(15 - k))
        << v;
  }
}

TEST(QuantLayout, Q4_K) {
  std::vector<uint8_t> q(144, 0);
  put_f16(&q[0], 1.0f);
  put_f16(&q[2], 0.5f);
  const int sc[8] = {1, 2, 3, 63, 17, 33, 48, 62}, mn[8] = {5, 0, 63, 7, 40, 1, 16, 31};
  uint8_t* s = &q[4];
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) q[16 + 32 * c + l] = static_cast<uint8_t>((l & 15) | ((15 - (l & 15)) << 4));
  const std::vector<float> y = dequantize(GgmlType::Q4_K, q, 256);
  for (int v = 0; v < 256; ++v) {
    const int c = v / 64, half = (v / 32) % 2, l = v % 32, j = 2 * c + half;
    const int level = half == 0 ? (l & 15) : 15 - (l & 15);
    EXPECT_EQ(y[v], 1.0f * static_cast<float>(sc[j]) * static_cast<float>(level) -
                        0.5f * static_cast<float>(mn[j]))
        << v;
  }
}

TEST(QuantLayout, IQ2_XXS) {
  std::vector<uint8_t> q(66, 0);
  put_f16(&q[0], 4.0f);
  // Sub-block 3: grid entries 0 (all 8), 1 (…, 43 last), 255, 2; sign index 1 → mask 0x81
  // (element 0 and, by parity, element 7 negative); scale s = 5 → 4·(0.5+5)/4 = 5.5.
  const uint32_t a = 0u | (1u << 8) | (255u << 16) | (2u << 24);
  const uint32_t b = 1u | (0u << 7) | (127u << 14) | (3u << 21) | (5u << 28);
  std::memcpy(&q[2 + 8 * 3], &a, 4);
  std::memcpy(&q[2 + 8 * 3 + 4], &b, 4);
  const std::vector<float> y = dequantize(GgmlType::IQ2_XXS, q, 256);
  const float db = 5.5f;
  // group 0: magnitudes all 8, signs 0x81
  for (int j = 0; j < 8; ++j) EXPECT_EQ(y[96 + j], (j == 0 || j == 7 ? -8.0f : 8.0f) * db) << j;
  // group 1: entry 1 = 0x080808080808082b → element 0 is 43 (low byte), the rest 8; no signs
  EXPECT_EQ(y[104], 43.0f * db);
  for (int j = 1; j < 8; ++j) EXPECT_EQ(y[104 + j], 8.0f * db);
  // group 2: sign index 127 → 0x7f has odd popcount → 0xff: all negative
  for (int j = 0; j < 8; ++j) EXPECT_LT(y[112 + j], 0.0f);
  // group 3: entry 2 = 0x0808080808081919 → elements 0,1 are 25; sign index 3 → 0x03: both negative
  EXPECT_EQ(y[120], -25.0f * db);
  EXPECT_EQ(y[121], -25.0f * db);
  EXPECT_EQ(y[122], 8.0f * db);
  // other sub-blocks: s = 0, entry 0, no signs → d·0.5·0.25·8 = 4
  for (int v = 0; v < 96; ++v) EXPECT_EQ(y[v], 4.0f) << v;
}

}  // namespace
}  // namespace ds4
