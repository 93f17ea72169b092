// Tests of kernels/qat.h (MODEL.md 2.6) against independently computed references: the table of
// all 127 positive finite E4M3 values and the 8 E2M1 values built here from their bit layouts,
// brute-force nearest search with ties to the even code, scales as the smallest power of two
// s with 448·s ≥ amax (6·s for FP4) in exact double arithmetic; the Walsh–Hadamard matrix
// (Sylvester order, H·H = n·I); idempotence and the n_nope boundary of the round trips.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <random>
#include <vector>

#include "kernels/qat.h"

namespace ds4 {
namespace {

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }

// E4M3FN magnitudes from the bit layout: code = eeee mmm, bias 7, subnormal when e = 0;
// code 127 (e=15, m=7) is NaN, so 0..126 are the finite ones.
std::vector<double> e4m3_table() {
  std::vector<double> t;
  for (int code = 0; code < 127; ++code) {
    const int e = code >> 3, m = code & 7;
    t.push_back(e == 0 ? m / 512.0 : (8 + m) * std::ldexp(1.0, e - 10));
  }
  return t;
}

// E2M1 magnitudes: code = ee m, bias 1, subnormal when e = 0.
std::vector<double> e2m1_table() {
  std::vector<double> t;
  for (int code = 0; code < 8; ++code) {
    const int e = code >> 1, m = code & 1;
    t.push_back(e == 0 ? m * 0.5 : (2 + m) * std::ldexp(1.0, e - 2));
  }
  return t;
}

// Index of the table value nearest to a (clamped to the largest), ties to the even index.
int brute_nearest(const std::vector<double>& table, double a) {
  int best = 0;
  for (int i = 1; i < static_cast<int>(table.size()); ++i) {
    const double di = std::fabs(a - table[i]), db = std::fabs(a - table[best]);
    if (di < db || (di == db && (i % 2 == 0))) best = i;
  }
  return best;
}

// Smallest power of two s with top·s ≥ a (exact in double), for a > 0.
double pow2_scale(double a, double top) {
  int e = -200;
  while (top * std::ldexp(1.0, e) < a) ++e;
  return std::ldexp(1.0, e);
}

std::vector<float> gaussian(int n, uint64_t seed, float sigma) {
  std::mt19937_64 rng(seed);
  auto uniform = [&rng] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1p-53; };
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i)
    v[i] = static_cast<float>(sigma * std::sqrt(-2.0 * std::log(uniform())) *
                              std::cos(2.0 * std::numbers::pi * uniform()));
  return v;
}

// Inputs that exercise every rounding decision: each value, each midpoint, their f32 neighbours.
std::vector<float> probe_points(const std::vector<double>& table) {
  std::vector<float> pts;
  for (size_t i = 0; i < table.size(); ++i) {
    const float v = static_cast<float>(table[i]);
    pts.insert(pts.end(), {v, std::nextafter(v, 0.0f), std::nextafter(v, 1e9f)});
    if (i + 1 < table.size()) {
      const float mid = static_cast<float>((table[i] + table[i + 1]) / 2);  // exact in f32
      pts.insert(pts.end(), {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)});
    }
  }
  return pts;
}

TEST(QatE4m3, ValuesMatchTable) {
  const std::vector<double> t = e4m3_table();
  ASSERT_EQ(t.size(), 127u);
  EXPECT_EQ(t[126], 448.0);
  EXPECT_EQ(t[1], 0x1p-9);
  EXPECT_EQ(t[8], 0x1p-6);
  for (int code = 0; code < 127; ++code) EXPECT_EQ(e4m3_value(code), t[code]) << code;
}

TEST(QatE4m3, RoundingAtEveryValueAndMidpoint) {
  const std::vector<double> t = e4m3_table();
  for (float p : probe_points(t)) {
    const int want = brute_nearest(t, p);
    ASSERT_EQ(e4m3_round_code(p), want) << "v=" << p;
    ASSERT_EQ(e4m3_round(p), static_cast<float>(t[want])) << "v=" << p;
    ASSERT_EQ(e4m3_round(-p), -static_cast<float>(t[want])) << "v=" << -p;
  }
  // Ties go to the even code: 2^-10 (between 0 and 2^-9) → 0; 3·2^-10 → code 2; 17 (between
  // 16 = code 88 and 18 = code 89) → 16; 19 (between 18 and 20 = code 90) → 20; 432 → 416.
  EXPECT_EQ(e4m3_round(0x1p-10f), 0.0f);
  EXPECT_EQ(e4m3_round(3 * 0x1p-10f), 0x1p-8f);
  EXPECT_EQ(e4m3_round(17.0f), 16.0f);
  EXPECT_EQ(e4m3_round(19.0f), 20.0f);
  EXPECT_EQ(e4m3_round(432.0f), 448.0f);
  EXPECT_EQ(e4m3_round(400.0f), 384.0f);
}

TEST(QatE4m3, ClampsAt448) {
  for (float v : {448.0f, 449.0f, 464.0f, 1e6f, 3.4e38f, INFINITY}) {
    EXPECT_EQ(e4m3_round_code(v), 126) << v;
    EXPECT_EQ(e4m3_round(-v), -448.0f) << v;
  }
}

TEST(QatE4m3, RandomValuesMatchBruteForce) {
  const std::vector<double> t = e4m3_table();
  std::mt19937_64 rng(1);
  for (int i = 0; i < 200000; ++i) {
    // log-uniform over [2^-14, 2^9]: subnormal range, every binade, and the clamp region
    const float v = std::ldexp(1.0f + static_cast<float>(rng() % (1u << 23)) * 0x1p-23f,
                               static_cast<int>(rng() % 24) - 14);
    ASSERT_EQ(e4m3_round_code(v), brute_nearest(t, std::fmin(v, 448.0f))) << v;
  }
}

TEST(QatE2m1, RoundingMatchesTable) {
  const std::vector<double> t = e2m1_table();
  const double want_values[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(t[i], want_values[i]);
    EXPECT_EQ(e2m1_value(i), t[i]);
  }
  for (float p : probe_points(t)) {
    const int want = brute_nearest(t, p);
    ASSERT_EQ(e2m1_round_index(p), want) << p;
    ASSERT_EQ(e2m1_round(-p), -static_cast<float>(t[want])) << p;
  }
  // ties to even index: 0.25→0, 0.75→1.0, 1.25→1.0, 1.75→2, 2.5→2, 3.5→4, 5→4
  const float ties[][2] = {{0.25f, 0}, {0.75f, 1}, {1.25f, 1}, {1.75f, 2},
                           {2.5f, 2},  {3.5f, 4},  {5.0f, 4}};
  for (const auto& tie : ties) EXPECT_EQ(e2m1_round(tie[0]), tie[1]) << tie[0];
  for (float v : {6.0f, 7.0f, 1e30f, INFINITY}) EXPECT_EQ(e2m1_round(v), 6.0f) << v;
}

TEST(QatScale, PowerOfTwoCeil) {
  for (int k = -126; k <= 127; ++k) {
    const float p = std::ldexp(1.0f, k);
    EXPECT_EQ(pow2_ceil_scale(p), p) << k;
    if (k < 127) {
      EXPECT_EQ(pow2_ceil_scale(std::nextafter(p, INFINITY)), 2.0f * p) << k;
    }
    if (k > -126) {
      EXPECT_EQ(pow2_ceil_scale(std::nextafter(p, 0.0f)), p) << k;
    }
  }
}

// Independent FP8 round trip of one row, from the tables and double arithmetic.
std::vector<float> fp8_expected(const std::vector<float>& row, int n_nope) {
  const std::vector<double> t = e4m3_table();
  std::vector<float> out = row;
  for (int off = 0; off < n_nope; off += 64) {
    double amax = 0;
    for (int i = 0; i < 64; ++i) amax = std::fmax(amax, std::fabs(row[off + i]));
    const double scale = pow2_scale(std::fmax(amax, static_cast<double>(1.0e-4f)), 448.0);
    for (int i = 0; i < 64; ++i) {
      const double v = row[off + i] / scale;  // exact: scale is a power of two
      const double q = t[brute_nearest(t, std::fmin(std::fabs(v), 448.0))];
      out[off + i] = static_cast<float>(std::copysign(q * scale, v));
    }
  }
  return out;
}

TEST(QatFp8, RoundTripMatchesIndependentDefinition) {
  for (int seed = 0; seed < 200; ++seed) {
    // scales from 1e-7 (below the 1e-4 amax floor) to 1e4, plus exact powers of two
    const float sigma = std::ldexp(1.0f, (seed % 40) - 26) * (seed % 3 == 0 ? 1.0f : 1.37f);
    std::vector<float> row = gaussian(512, seed, sigma);
    if (seed % 7 == 0) row[seed % 448] = 448.0f * std::ldexp(1.0f, seed % 9 - 4);  // amax = 448·2^k
    const std::vector<float> want = fp8_expected(row, 448);
    fp8_e4m3_round_trip(row.data(), 448);
    for (int i = 0; i < 512; ++i) ASSERT_EQ(bits(row[i]), bits(want[i])) << seed << " " << i;
  }
}

TEST(QatFp8, LeavesTheRopeTailUntouched) {
  std::vector<float> row = gaussian(512, 5, 3.0f);
  const std::vector<float> before = row;
  fp8_e4m3_round_trip(row.data(), 448);
  for (int i = 448; i < 512; ++i) EXPECT_EQ(bits(row[i]), bits(before[i]));
  int changed = 0;
  for (int i = 0; i < 448; ++i) changed += row[i] != before[i];
  EXPECT_GT(changed, 300);  // Gaussian data is almost never E4M3-representable
  // The count is a parameter: 128 leaves everything from 128 on alone.
  std::vector<float> row2 = before;
  fp8_e4m3_round_trip(row2.data(), 128);
  for (int i = 128; i < 512; ++i) EXPECT_EQ(bits(row2[i]), bits(before[i]));
  for (int i = 0; i < 128; ++i) EXPECT_EQ(bits(row2[i]), bits(row[i]));
}

TEST(QatFp8, ZeroAndTinyRows) {
  std::vector<float> zero(448, 0.0f);
  fp8_e4m3_round_trip(zero.data(), 448);
  for (float v : zero) EXPECT_EQ(bits(v), 0u);
  // amax below the 1e-4 floor: scale = 2^ceil(log2(1e-4/448)) = 2^-22, so 2^-31 survives exactly
  // and 2^-33 (a quarter of the smallest step 2^-31) rounds to zero.
  std::vector<float> tiny(64, 0.0f);
  tiny[0] = 0x1p-31f;
  tiny[1] = 0x1p-33f;
  tiny[2] = -5e-5f;
  fp8_e4m3_round_trip(tiny.data(), 64);
  EXPECT_EQ(tiny[0], 0x1p-31f);
  EXPECT_EQ(tiny[1], 0.0f);
  EXPECT_EQ(tiny[2], -static_cast<float>(e4m3_table()[brute_nearest(e4m3_table(), 5e-5 / 0x1p-22)] * 0x1p-22));
}

TEST(QatFp8, Idempotent) {
  for (int seed = 0; seed < 100; ++seed) {
    std::vector<float> row = gaussian(448, 1000 + seed, std::ldexp(1.0f, seed % 30 - 20));
    fp8_e4m3_round_trip(row.data(), 448);
    std::vector<float> again = row;
    fp8_e4m3_round_trip(again.data(), 448);
    for (int i = 0; i < 448; ++i) ASSERT_EQ(bits(again[i]), bits(row[i])) << seed << " " << i;
  }
}

TEST(QatHadamard, SylvesterMatrixAndOrthogonality) {
  for (int n = 1; n <= 256; n *= 2) {
    std::vector<float> h(static_cast<size_t>(n) * n);  // h[i*n + j] = row i, column j
    for (int j = 0; j < n; ++j) {
      std::vector<float> e(n, 0.0f);
      e[j] = 1.0f;
      walsh_hadamard(e.data(), n);
      for (int i = 0; i < n; ++i) h[static_cast<size_t>(i) * n + j] = e[i];
    }
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        ASSERT_EQ(h[static_cast<size_t>(i) * n + j], (std::popcount(unsigned(i & j)) & 1) ? -1.0f : 1.0f)
            << n << " " << i << " " << j;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int k = 0; k < n; ++k)
          s += h[static_cast<size_t>(i) * n + k] * h[static_cast<size_t>(k) * n + j];
        ASSERT_EQ(s, i == j ? static_cast<double>(n) : 0.0) << n << " " << i << " " << j;
      }
  }
}

TEST(QatHadamard, TwiceIsNTimesIdentityAndDotProductsArePreserved) {
  const int n = 128;
  std::vector<float> q = gaussian(n, 1, 1.0f), k = gaussian(n, 2, 1.0f);
  std::vector<float> q2 = q;
  walsh_hadamard(q2.data(), n);
  walsh_hadamard(q2.data(), n);
  for (int i = 0; i < n; ++i) EXPECT_NEAR(q2[i], n * q[i], 1e-4 * n);
  std::vector<float> qr = q, kr = k;
  walsh_hadamard(qr.data(), n);
  walsh_hadamard(kr.data(), n);
  double dot = 0, dot_rot = 0;
  for (int i = 0; i < n; ++i) {
    dot += static_cast<double>(q[i]) * k[i];
    dot_rot += static_cast<double>(qr[i]) * kr[i] / n;
  }
  EXPECT_NEAR(dot_rot, dot, 1e-4 * n);
}

std::vector<float> fp4_expected(const std::vector<float>& x) {
  const std::vector<double> t = e2m1_table();
  std::vector<float> out = x;
  for (size_t off = 0; off < x.size(); off += 32) {
    double amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[off + i]));
    const double scale = pow2_scale(std::fmax(amax, static_cast<double>(kFp4AmaxFloor)), 6.0);
    for (int i = 0; i < 32; ++i) {
      const double v = x[off + i] / scale;
      out[off + i] = static_cast<float>(std::copysign(t[brute_nearest(t, std::fabs(v))] * scale, v));
    }
  }
  return out;
}

TEST(QatFp4, RoundTripMatchesIndependentDefinition) {
  for (int seed = 0; seed < 300; ++seed) {
    std::vector<float> x = gaussian(128, 50 + seed, std::ldexp(1.0f, seed % 60 - 40));
    if (seed % 5 == 0) x[seed % 128] = 6.0f * std::ldexp(1.0f, seed % 11 - 5);  // amax = 6·2^k
    const std::vector<float> want = fp4_expected(x);
    fp4_e2m1_round_trip(x.data(), 128);
    for (int i = 0; i < 128; ++i) ASSERT_EQ(bits(x[i]), bits(want[i])) << seed << " " << i;
  }
}

TEST(QatFp4, ZeroRowsFloorAndIdempotence) {
  std::vector<float> zero(32, 0.0f);
  fp4_e2m1_round_trip(zero.data(), 32);
  for (float v : zero) EXPECT_EQ(bits(v), 0u);
  std::vector<float> tiny(32, 1e-39f);  // subnormal inputs: scale floor 2^-126 keeps it finite
  fp4_e2m1_round_trip(tiny.data(), 32);
  for (float v : tiny) EXPECT_TRUE(std::isfinite(v));
  for (int seed = 0; seed < 100; ++seed) {
    std::vector<float> x = gaussian(128, 900 + seed, std::ldexp(1.0f, seed % 20 - 10));
    fp4_e2m1_round_trip(x.data(), 128);
    std::vector<float> again = x;
    fp4_e2m1_round_trip(again.data(), 128);
    for (int i = 0; i < 128; ++i) ASSERT_EQ(bits(again[i]), bits(x[i])) << seed << " " << i;
  }
}

TEST(QatIndexer, IsScaledHadamardThenFp4InTheRotatedBasis) {
  for (int n : {32, 64, 128, 256}) {
    std::vector<float> x = gaussian(n, 77 + n, 0.8f);
    std::vector<float> want = x;
    walsh_hadamard(want.data(), n);
    const float inv = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
    for (float& v : want) v *= inv;
    // The rotated vector before rounding matches the matrix definition H·x/√n.
    for (int i = 0; i < n; ++i) {
      double s = 0;
      for (int j = 0; j < n; ++j) s += ((std::popcount(unsigned(i & j)) & 1) ? -1.0 : 1.0) * x[j];
      ASSERT_NEAR(want[i], s / std::sqrt(static_cast<double>(n)), 1e-5) << n << " " << i;
    }
    want = fp4_expected(want);
    indexer_hadamard_fp4_round_trip(x.data(), n);
    for (int i = 0; i < n; ++i) ASSERT_EQ(bits(x[i]), bits(want[i])) << n << " " << i;
  }
  // For n = 128 the scale is ds4's constant 0.08838834764831845f.
  EXPECT_EQ(static_cast<float>(1.0 / std::sqrt(128.0)), 0.08838834764831845f);
}

TEST(QatIndexer, RotatedScoresApproximateTheOriginalDotProduct) {
  // Queries and rows are both rotated, so q·k survives up to FP4 rounding: the score error is a
  // small fraction of |q|·|k| (FP4 with power-of-two block scales: ≈10% relative per element).
  double worst = 0;
  for (int seed = 0; seed < 50; ++seed) {
    std::vector<float> q = gaussian(128, 3 * seed, 1.0f), k = gaussian(128, 3 * seed + 1, 1.0f);
    double dot = 0, nq = 0, nk = 0;
    for (int i = 0; i < 128; ++i) {
      dot += static_cast<double>(q[i]) * k[i];
      nq += static_cast<double>(q[i]) * q[i];
      nk += static_cast<double>(k[i]) * k[i];
    }
    indexer_hadamard_fp4_round_trip(q.data(), 128);
    indexer_hadamard_fp4_round_trip(k.data(), 128);
    double dot_q = 0;
    for (int i = 0; i < 128; ++i) dot_q += static_cast<double>(q[i]) * k[i];
    worst = std::fmax(worst, std::fabs(dot_q - dot) / std::sqrt(nq * nk));
  }
  EXPECT_LT(worst, 0.1);
}

}  // namespace
}  // namespace ds4
