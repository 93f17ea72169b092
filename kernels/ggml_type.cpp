// The ggml type table (ids, names, block geometry) as used by GGUF v3 files (MODEL.md 4.1, 4.5).
#include "kernels/ggml_type.h"

#include <array>
#include <cstdlib>
#include <cstdio>

namespace ds4 {
namespace {

constexpr std::array<GgmlTypeInfo, 9> kTypes = {{
    {GgmlType::F32, "F32", 1, 4},
    {GgmlType::F16, "F16", 1, 2},
    {GgmlType::Q8_0, "Q8_0", 32, 34},
    {GgmlType::Q2_K, "Q2_K", 256, 84},
    {GgmlType::Q4_K, "Q4_K", 256, 144},
    {GgmlType::Q8_K, "Q8_K", 256, 292},
    {GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66},
    {GgmlType::I32, "I32", 1, 4},
    {GgmlType::BF16, "BF16", 1, 2},
}};

}  // namespace

std::optional<GgmlTypeInfo> ggml_type_info(uint32_t type_id) {
  for (const auto& t : kTypes)
    if (static_cast<uint32_t>(t.type) == type_id) return t;
  return std::nullopt;
}

const GgmlTypeInfo& ggml_type_info(GgmlType type) {
  // Called per row by the quant routines: a direct index instead of a search.
  switch (type) {
    case GgmlType::F32: return kTypes[0];
    case GgmlType::F16: return kTypes[1];
    case GgmlType::Q8_0: return kTypes[2];
    case GgmlType::Q2_K: return kTypes[3];
    case GgmlType::Q4_K: return kTypes[4];
    case GgmlType::Q8_K: return kTypes[5];
    case GgmlType::IQ2_XXS: return kTypes[6];
    case GgmlType::I32: return kTypes[7];
    case GgmlType::BF16: return kTypes[8];
  }
  std::fprintf(stderr, "%s:%d: unknown GgmlType %u\n", __FILE__, __LINE__,
               static_cast<unsigned>(type));
  std::abort();
}

std::string_view ggml_type_name(GgmlType type) { return ggml_type_info(type).name; }

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
  for (const auto& t : kTypes)
    if (t.name == name) return t.type;
  return std::nullopt;
}

std::optional<uint64_t> ggml_row_bytes(GgmlType type, uint64_t n_values) {
  const auto& info = ggml_type_info(type);
  if (n_values % info.block_values != 0) return std::nullopt;
  return n_values / info.block_values * info.block_bytes;
}

}  // namespace ds4
