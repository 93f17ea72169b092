// Entry points of kernels/quant.h: validate the row length once, then dispatch to the format's
// routines (kernels/quant_<format>.cpp). Also owns the f64 reference dot product, which is the
// same for every format: dequantise one block with the scalar reference, accumulate in double.
// Called by the GGUF writer, the CPU backend, the synthetic-model generator, tests and benches.
#include "kernels/quant.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "kernels/quant_formats.h"

namespace ds4 {
namespace {

[[noreturn]] void quant_fail(const char* file, int line, const char* what, GgmlType type,
                             int64_t n) {
  std::fprintf(stderr, "%s:%d: %s (type %u, n %lld)\n", file, line, what,
               static_cast<unsigned>(type), static_cast<long long>(n));
  std::abort();
}

const quant::FormatOps* find_ops(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return &quant::f32_ops();
    case GgmlType::F16: return &quant::f16_ops();
    case GgmlType::BF16: return &quant::bf16_ops();
    case GgmlType::Q8_0: return &quant::q8_0_ops();
    case GgmlType::Q2_K: return &quant::q2_k_ops();
    case GgmlType::Q4_K: return &quant::q4_k_ops();
    case GgmlType::IQ2_XXS: return &quant::iq2_xxs_ops();
    default: return nullptr;
  }
}

// The ops of `type` for a row of n values; aborts (programmer error) on an unsupported type or
// a row that is not a whole number of blocks.
const quant::FormatOps& checked_ops(GgmlType type, int64_t n) {
  const quant::FormatOps* ops = find_ops(type);
  if (ops == nullptr) quant_fail(__FILE__, __LINE__, "quant: unsupported type", type, n);
  if (n < 0 || !ggml_row_bytes(type, static_cast<uint64_t>(n)))
    quant_fail(__FILE__, __LINE__, "quant: row length is not a whole number of blocks", type, n);
  return *ops;
}

}  // namespace

bool quant_supported(GgmlType type) { return find_ops(type) != nullptr; }

void dequantize_row(GgmlType type, const void* src, float* dst, int64_t n) {
  checked_ops(type, n).dequantize(static_cast<const uint8_t*>(src), dst, n);
}

void dequantize_row_ref(GgmlType type, const void* src, float* dst, int64_t n) {
  checked_ops(type, n).dequantize_ref(static_cast<const uint8_t*>(src), dst, n);
}

void quantize_row(GgmlType type, const float* src, void* dst, int64_t n) {
  const quant::FormatOps& ops = checked_ops(type, n);
  const bool plain = type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16;
  if (!plain) {
    // Block formats derive scales from the data; a NaN or inf would silently poison a block.
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(src[i]))
        quant_fail(__FILE__, __LINE__, "quantize_row: non-finite input value", type, i);
  }
  ops.quantize(src, static_cast<uint8_t*>(dst), n);
}

float dot_row(GgmlType type, const void* w, const float* x, int64_t n) {
  return checked_ops(type, n).dot(static_cast<const uint8_t*>(w), x, n);
}

float dot_row_ref(GgmlType type, const void* w, const float* x, int64_t n) {
  const quant::FormatOps& ops = checked_ops(type, n);
  const GgmlTypeInfo& info = ggml_type_info(type);
  const auto* src = static_cast<const uint8_t*>(w);
  float block[kQK_K];  // one block of dequantised values (block_values ≤ 256)
  double sum = 0.0;
  for (int64_t i = 0; i < n; i += info.block_values) {
    ops.dequantize_ref(src, block, info.block_values);
    for (uint32_t j = 0; j < info.block_values; ++j)
      sum += static_cast<double>(block[j]) * static_cast<double>(x[i + j]);
    src += info.block_bytes;
  }
  return static_cast<float>(sum);
}

}  // namespace ds4
