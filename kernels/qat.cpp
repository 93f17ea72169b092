// FP8 E4M3 / FP4 E2M1 round trips and the Walsh–Hadamard transform of kernels/qat.h
// (MODEL.md 2.6). Rounding is computed directly from the binade (exact power-of-two steps and
// nearbyint, i.e. ties to even, in the default rounding mode) rather than by table search.
// Called by the CPU backend and tests.
#include "kernels/qat.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ds4 {
namespace {

[[noreturn]] void qat_fail(const char* file, int line, const char* what, int n) {
  std::fprintf(stderr, "%s:%d: %s (n %d)\n", file, line, what, n);
  std::abort();
}

bool is_power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

}  // namespace

float e4m3_value(int code) {
  const int e = (code >> 3) & 15, m = code & 7;
  if (e == 0) return std::ldexp(static_cast<float>(m), -9);
  return std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
}

int e4m3_round_code(float v) {
  const float ax = std::fabs(v);
  if (!(ax < kE4m3Max)) return 126;  // clamp (NaN also maps to the largest finite value)
  if (ax < 0.015625f) {              // below 2^-6: subnormal codes 0..7 step 2^-9 (8 = 2^-6)
    return static_cast<int>(std::nearbyint(ax * 512.0f));
  }
  int e2;
  std::frexp(ax, &e2);  // ax ∈ [2^(e2−1), 2^e2)
  const int e = e2 - 1;  // -6..8
  // q ∈ [8, 16]: the value in units of the binade step 2^(e−3); q = 16 is the next binade's m = 0.
  const int q = static_cast<int>(std::nearbyint(std::ldexp(ax, 3 - e)));
  return ((e + 7) << 3) + (q - 8);
}

float e4m3_round(float v) { return std::copysign(e4m3_value(e4m3_round_code(v)), v); }

float e2m1_value(int index) {
  static constexpr float kValues[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  return kValues[index & 7];
}

int e2m1_round_index(float v) {
  const float ax = std::fabs(v);
  if (!(ax < kE2m1Max)) return 7;
  if (ax < 2.0f) return static_cast<int>(std::nearbyint(ax * 2.0f));  // step 0.5: index = q
  if (ax < 4.0f) return static_cast<int>(std::nearbyint(ax)) + 2;     // 2,3,4 → 4,5,6
  return static_cast<int>(std::nearbyint(ax * 0.5f)) + 4;             // 4,6 → 6,7
}

float e2m1_round(float v) { return std::copysign(e2m1_value(e2m1_round_index(v)), v); }

float pow2_ceil_scale(float y) {
  uint32_t bits;
  std::memcpy(&bits, &y, 4);
  const int exponent = static_cast<int>((bits >> 23) & 0xffu) - 127;
  const int ceil_log2 = exponent + ((bits & 0x7fffffu) != 0 ? 1 : 0);
  return std::ldexp(1.0f, ceil_log2);
}

void fp8_e4m3_round_trip(float* row, int n_nope) {
  if (n_nope < 0 || n_nope % kFp8BlockValues != 0)
    qat_fail(__FILE__, __LINE__, "fp8_e4m3_round_trip: n_nope must be a multiple of 64", n_nope);
  for (int off = 0; off < n_nope; off += kFp8BlockValues) {
    float* x = row + off;
    float amax = 0.0f;
    for (int i = 0; i < kFp8BlockValues; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    const float scale = pow2_ceil_scale(std::fmax(amax, kFp8AmaxFloor) / kE4m3Max);
    for (int i = 0; i < kFp8BlockValues; ++i) {
      const float v = std::fmin(std::fmax(x[i] / scale, -kE4m3Max), kE4m3Max);
      x[i] = e4m3_round(v) * scale;
    }
  }
}

void walsh_hadamard(float* x, int n) {
  if (!is_power_of_two(n)) qat_fail(__FILE__, __LINE__, "walsh_hadamard: n must be a power of two", n);
  for (int stride = 1; stride < n; stride <<= 1) {
    for (int base = 0; base < n; base += 2 * stride) {
      for (int i = base; i < base + stride; ++i) {
        const float a = x[i], b = x[i + stride];
        x[i] = a + b;
        x[i + stride] = a - b;
      }
    }
  }
}

void fp4_e2m1_round_trip(float* x, int n) {
  if (n < 0 || n % kFp4BlockValues != 0)
    qat_fail(__FILE__, __LINE__, "fp4_e2m1_round_trip: n must be a multiple of 32", n);
  for (int off = 0; off < n; off += kFp4BlockValues) {
    float* b = x + off;
    float amax = 0.0f;
    for (int i = 0; i < kFp4BlockValues; ++i) amax = std::fmax(amax, std::fabs(b[i]));
    const float scale = pow2_ceil_scale(std::fmax(amax, kFp4AmaxFloor) / kE2m1Max);
    for (int i = 0; i < kFp4BlockValues; ++i) {
      const float v = std::fmin(std::fmax(b[i] / scale, -kE2m1Max), kE2m1Max);
      b[i] = e2m1_round(v) * scale;
    }
  }
}

void indexer_hadamard_fp4_round_trip(float* x, int n) {
  if (!is_power_of_two(n) || n < kFp4BlockValues)
    qat_fail(__FILE__, __LINE__,
             "indexer_hadamard_fp4_round_trip: n must be a power of two >= 32", n);
  walsh_hadamard(x, n);
  const float inv_sqrt_n = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
  for (int i = 0; i < n; ++i) x[i] *= inv_sqrt_n;
  fp4_e2m1_round_trip(x, n);
}

}  // namespace ds4
