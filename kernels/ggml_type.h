// Tensor element types of the GGUF container (ggml type ids) and their block geometry.
// Owns the one table of block sizes every reader, writer and quant routine relies on.
// Invariant: a row of n values of a quantised type occupies (n / block_values) * block_bytes
// bytes and n must be a multiple of block_values.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ds4 {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q8_0 = 8,
  Q2_K = 10,
  Q4_K = 12,
  Q8_K = 15,  // activations only (never stored in model files)
  IQ2_XXS = 16,
  I32 = 26,
  BF16 = 30,
};

struct GgmlTypeInfo {
  GgmlType type;
  std::string_view name;
  uint32_t block_values;  // values per block (1 for plain types)
  uint32_t block_bytes;   // bytes per block
};

// Info for a type id we support, or nullopt for any other id (e.g. read from a hostile file).
std::optional<GgmlTypeInfo> ggml_type_info(uint32_t type_id);
const GgmlTypeInfo& ggml_type_info(GgmlType type);
std::string_view ggml_type_name(GgmlType type);
std::optional<GgmlType> ggml_type_from_name(std::string_view name);

// Bytes of a row of n values; nullopt when n is not a whole number of blocks.
std::optional<uint64_t> ggml_row_bytes(GgmlType type, uint64_t n_values);

constexpr uint32_t kQK_K = 256;  // super-block size of the K-quants and IQ2 formats

}  // namespace ds4
