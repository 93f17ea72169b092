// Converter from a HF transformers DeepseekV4ForCausalLM checkpoint (config.json +
// model.safetensors) to our GGUF: the config mapped onto deepseek4.* metadata, every tensor
// renamed, transposed / split into the GGUF layout (docs/HF-REFERENCE.md). Used by
// `ds4serve-model convert-hf` and the golden tests. Unsupported HF settings throw LoadError.
#pragma once
#include <string>

#include "engine/model_config.h"
#include "kernels/ggml_type.h"

namespace ds4 {

// Reads <dir>/config.json into a ModelConfig (validated).
ModelConfig config_from_hf(const std::string& dir);

// Writes the GGUF. Matrices are stored as matrix_type (F32 or F16; F16 is exact for checkpoints
// whose values are f16), vectors always F32. No tokenizer metadata (HF test checkpoints have
// their own small vocabularies).
void convert_hf_checkpoint(const std::string& dir, const std::string& out_path, GgmlType matrix_type = GgmlType::F32);

}  // namespace ds4
