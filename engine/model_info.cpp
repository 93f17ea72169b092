// Model file summaries: per-category bytes, scheme detection, formatting (see model_info.h).
#include "engine/model_info.h"

#include <cstdio>

#include "engine/gguf.h"

namespace ds4 {

ModelBytes measure_model_bytes(const GgufFile& file, const ModelConfig& config) {
  ModelBytes b;
  b.total_bytes = file.file_bytes();
  b.header_bytes = file.data_offset();
  b.n_tensors = file.tensors().size();
  for (const auto& spec : model_tensor_specs(config))
    if (const GgufTensorInfo* t = file.find_tensor(spec.name))
      b.category_bytes[static_cast<int>(spec.category)] += t->n_bytes;
  return b;
}

std::optional<QuantScheme> matching_scheme(const GgufFile& file, const ModelConfig& config) {
  for (QuantScheme s : {QuantScheme::kQ2, QuantScheme::kQ4, QuantScheme::kQ8_0, QuantScheme::kF16, QuantScheme::kF32}) {
    bool all = true;
    for (const auto& spec : model_tensor_specs(config)) {
      const GgufTensorInfo* t = file.find_tensor(spec.name);
      if ((t && t->type != tensor_type_for(spec, s)) || (!t && !spec.optional)) {
        all = false;
        break;
      }
    }
    if (all) return s;
  }
  return std::nullopt;
}

std::string format_model_bytes(const ModelBytes& b) {
  std::string out;
  char line[160];
  auto row = [&](const char* name, uint64_t bytes) {
    std::snprintf(line, sizeof line, "  %-24s %16llu B  %9.3f GB  %9.3f GiB\n", name, static_cast<unsigned long long>(bytes),
                  bytes / 1e9, bytes / 1073741824.0);
    out += line;
  };
  for (int i = 0; i < kNumTensorCategories; ++i) row(tensor_category_name(static_cast<TensorCategory>(i)), b.category_bytes[i]);
  row("header + directory", b.header_bytes);
  row("total file", b.total_bytes);
  return out;
}

}  // namespace ds4
