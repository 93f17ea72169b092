// Quantised row formats of MODEL.md 4.5: dequantise, quantise and dot product against f32.
// Every routine works on one row of n values (n a multiple of the type's block size, checked
// by the caller via ggml_row_bytes). Each format has a plain scalar reference (`*_ref`) and the
// default entry points below, which use the vectorised CPU path where one exists; both must
// agree (tests). Called by the GGUF writer (quantise), the CPU backend (dot, dequantise) and the
// synthetic-model generator.
#pragma once
#include <cstdint>

#include "kernels/ggml_type.h"

namespace ds4 {

// True for the types these routines accept: F32, F16, BF16, Q8_0, Q2_K, Q4_K, IQ2_XXS
// (I32 and Q8_K are not weight formats with float semantics here).
bool quant_supported(GgmlType type);

// A row length that is not a whole number of blocks, or an unsupported type, is a programmer
// error: these routines abort with file:line (callers validate shapes when binding tensors).

// dst[0..n) = values of the row stored at src. The reference is ggml's scalar definition; the
// vectorised path gives bit-identical floats (tests/unit/quant_test.cpp, and against the gguf
// package in tests/python/test_quant_gguf.py). Any source alignment is accepted.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);
void dequantize_row_ref(GgmlType type, const void* src, float* dst, int64_t n);

// Encodes src[0..n) into dst (ggml_row_bytes(type, n) bytes). Deterministic, and blocks are
// independent (quantising a row equals quantising each block alone). F16/BF16 round to nearest
// even; block formats need finite input (aborts otherwise), saturate their f16 scales at 65504
// and flush rows too small for an f16 scale to zero. Relative RMS error on N(0,1) data:
// F16 2.1e-4, BF16 1.7e-3, Q8_0 5.3e-3, Q4_K 0.070, Q2_K 0.26, IQ2_XXS 0.33.
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);

// Σ_i w_i · x_i where w is the stored row; accumulates in f32 (f64 in the reference, which
// dequantises each block with dequantize_row_ref). |dot_row − dot_row_ref| ≤ 1e-5·Σ|w_i·x_i|.
float dot_row(GgmlType type, const void* w, const float* x, int64_t n);
float dot_row_ref(GgmlType type, const void* w, const float* x, int64_t n);

}  // namespace ds4
