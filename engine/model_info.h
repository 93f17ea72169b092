// Summaries of a model file for `ds4serve-model info` and `synth`: bytes per tensor category
// (MODEL.md 4.4), which published quantisation scheme the tensor types match, and text tables.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "engine/model_config.h"
#include "engine/model_layout.h"

namespace ds4 {

class GgufFile;

struct ModelBytes {
  uint64_t total_bytes = 0;   // whole file
  uint64_t header_bytes = 0;  // metadata + tensor directory + padding
  uint64_t n_tensors = 0;
  std::array<uint64_t, kNumTensorCategories> category_bytes{};  // tensor data per category
};

// Bytes per category of the tensors the config expects, as stored in the file.
ModelBytes measure_model_bytes(const GgufFile& file, const ModelConfig& config);
// The scheme (q2, q4, ...) whose types every tensor of the file has, if any.
std::optional<QuantScheme> matching_scheme(const GgufFile& file, const ModelConfig& config);
// "category  bytes  GB  GiB" table plus the total.
std::string format_model_bytes(const ModelBytes& bytes);

}  // namespace ds4
