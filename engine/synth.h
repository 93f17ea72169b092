// Synthetic DeepSeek V4 Flash-shaped models: the exact tensor names, types and shapes of the
// published files (model_layout.h) at any scale, filled with seeded random values scaled so that
// activations stay finite through every layer, plus the real tokenizer. Written streaming (the
// full q2 model is 86.7 GB); a dry run writes only the header and tensor directory.
// Deterministic: the same options give the same bytes. Called by `ds4serve-model synth`.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/ggml_type.h"

#include "engine/model_config.h"
#include "engine/model_info.h"
#include "engine/model_layout.h"

namespace ds4 {

struct SynthOptions {
  ModelConfig config;
  QuantScheme scheme = QuantScheme::kQ2;
  uint64_t seed = 1;
  std::string tokenizer_dir;  // tokens.txt / types.txt / merges.txt (data/tokenizer unpacked)
  bool dry_run = false;       // header and tensor directory only
  bool mtp = false;           // write the MTP draft module (mtp.0.*) instead of the main model
  int threads = 0;            // 0 = hardware concurrency
};

// Writes the model to out_path (or only its header in a dry run). Throws LoadError on bad options
// (a width that the scheme's block size cannot hold, a tokenizer that does not match n_vocab) or
// I/O failure.
ModelBytes synthesize_model(const SynthOptions& options, const std::string& out_path);

// Generates the float values of rows [row_begin, row_end) of a tensor (row = ne0 values) into out;
// the file stores them quantised to the tensor's type, except for direct-block tensors
// (synth_direct_tensor). Exposed for tests: values depend only on (seed, tensor name, row index).
void synth_tensor_rows(const TensorSpec& spec, const ModelConfig& config, uint64_t seed, uint64_t row_begin,
                       uint64_t row_end, float* out);

// Per-tensor seed: every row's values (and a direct tensor's blocks) derive from it and the row
// index (kernels/synth_blocks.h synth_row_seed).
uint64_t synth_tensor_seed(uint64_t seed, const std::string& tensor_name);

// True when the tensor is stored as direct random blocks rather than quantised floats: routed
// experts (gate/up/down) of an IQ2_XXS, Q2_K or Q4_K type. Their values have mean 0 and standard
// deviation synth_direct_std(spec) = 1/sqrt(fan-in), like the float matrices; the GPU generator
// (engine/cuda DeviceWeights::synthesize) writes the same bytes.
bool synth_direct_tensor(const TensorSpec& spec, GgmlType type);
double synth_direct_std(const TensorSpec& spec);

// The stored bytes of rows [begin, end) of a tensor of the given type (row_bytes each) into dst,
// exactly as synthesize_model writes them. Thread-safe; rows are independent.
void synth_encode_rows(const TensorSpec& spec, const ModelConfig& config, GgmlType type, uint64_t seed,
                       uint64_t begin, uint64_t end, uint8_t* dst);

}  // namespace ds4
