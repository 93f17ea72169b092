// The in-graph quantisation round trips of DeepSeek V4 (MODEL.md 2.6): FP8 E4M3 on the non-RoPE
// part of every KV row, and Walsh–Hadamard + FP4 E2M1 on every indexer vector, plus the scalar
// rounding helpers they are built from. All results are exact functions of the input bits
// (power-of-two scales, round to nearest with ties to the even code). Called by the CPU backend
// (raw KV push, compressor outputs, indexer q and rows) and the tests; the CUDA kernels must match.
#pragma once
#include <cstdint>

namespace ds4 {

// ---- FP8 E4M3FN (OCP "fn": no infinities, 0x7f/0xff are NaN, largest finite 448 = code 126) ----
constexpr float kE4m3Max = 448.0f;

// Value of a 7-bit magnitude code (0..126): e = code >> 3, m = code & 7;
// e = 0 → m·2^-9, else (1 + m/8)·2^(e−7).
float e4m3_value(int code);
// Magnitude code (0..126) nearest to |v|, clamping |v| ≥ 448 to 126; ties go to the even code.
int e4m3_round_code(float v);
// v rounded to the nearest E4M3 value with v's sign (|v| clamped to 448; ±0 keeps its sign).
float e4m3_round(float v);

// ---- FP4 E2M1 (values 0, 0.5, 1, 1.5, 2, 3, 4, 6) ---------------------------------------------
constexpr float kE2m1Max = 6.0f;

float e2m1_value(int index);          // index 0..7
int e2m1_round_index(float v);        // nearest index to |v| (clamped to 6), ties to even index
float e2m1_round(float v);            // signed round trip

// Power-of-two block scale 2^ceil(log2(y)) for a positive normal y, computed exactly from the
// exponent and mantissa bits (as DeepSeek's published act_quant kernels do, fast_log2_ceil).
// ds4's ceilf(log2f(y)) is one binade low for some y a few ulps above a power of two.
float pow2_ceil_scale(float y);

// ---- round trips ---------------------------------------------------------------------------------
constexpr int kFp8BlockValues = 64;
constexpr float kFp8AmaxFloor = 1.0e-4f;
constexpr int kFp4BlockValues = 32;
constexpr float kFp4AmaxFloor = 7.052966104933725e-38f;  // 6·2^-126: amax/6 stays a normal float

// FP8 E4M3 round trip, in place, of row[0..n_nope) in blocks of 64 (row[n_nope..) untouched):
// a = max(max |x|, 1e-4); scale = 2^ceil(log2(a/448)); x ← e4m3_round(clamp(x/scale, ±448))·scale.
// n_nope must be a multiple of 64 (448 for the model's 512-wide KV rows; aborts otherwise).
void fp8_e4m3_round_trip(float* row, int n_nope);

// Unnormalised Walsh–Hadamard transform in natural (Sylvester) order, in place: butterflies
// (a+b, a−b) with strides 1, 2, …, n/2. n must be a power of two. Applying it twice gives n·x.
void walsh_hadamard(float* x, int n);

// FP4 E2M1 round trip, in place, in blocks of 32: scale = 2^ceil(log2(max(amax, kFp4AmaxFloor)/6)),
// x ← e2m1_round(clamp(x/scale, ±6))·scale. n must be a multiple of 32.
void fp4_e2m1_round_trip(float* x, int n);

// The indexer QAT of one vector, in place: walsh_hadamard, times (float)(1/sqrt(n)), then
// fp4_e2m1_round_trip. The result stays in the rotated basis: queries and stored rows are both
// rotated, and the rotation is orthogonal, so their dot products are those of the unrotated
// vectors up to the FP4 rounding. n: power of two, ≥ 32 (128 for the model).
void indexer_hadamard_fp4_round_trip(float* x, int n);

}  // namespace ds4
