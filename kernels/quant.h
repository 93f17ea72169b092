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

// dst[0..n) = values of the row stored at src.
void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n);
void dequantize_row_ref(GgmlType type, const void* src, float* dst, int64_t n);

// Encodes src[0..n) into dst (ggml_row_bytes(type, n) bytes). Deterministic.
void quantize_row(GgmlType type, const float* src, void* dst, int64_t n);

// Σ_i w_i · x_i where w is the stored row; accumulates in f32 (f64 in the reference).
float dot_row(GgmlType type, const void* w, const float* x, int64_t n);
float dot_row_ref(GgmlType type, const void* w, const float* x, int64_t n);

}  // namespace ds4
