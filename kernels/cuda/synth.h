// GPU generation of direct synthetic quantised blocks (kernels/synth_blocks.h): fills a whole
// expert tensor in device memory with exactly the bytes engine/synth.cpp writes to a file, so the
// full-size synthetic model (78 GB of routed experts) is made on the GPU in seconds instead of
// being read from an 81 GiB file. Called by engine/cuda DeviceWeights::synthesize and the GPU tests.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/ggml_type.h"
#include "kernels/synth_blocks.h"

namespace ds4::cuda {

// Rows [0, n_rows) of a tensor: row r at out + r · blocks_per_row · block_bytes, block b of row r
// = synth_block(type, scales, synth_block_seed(synth_row_seed(tensor_seed, r), b)).
struct SynthBlocksParams {
  uint8_t* out = nullptr;  // device, 2-byte aligned
  GgmlType type = GgmlType::IQ2_XXS;
  SynthBlockScales scales;
  uint64_t tensor_seed = 0;
  uint64_t n_rows = 0;
  uint64_t blocks_per_row = 0;
  uint64_t first_row = 0;  // the tensor's row index of out's first row (a slice: one rank's experts)
};
void synth_blocks(const SynthBlocksParams& p, cudaStream_t stream);

}  // namespace ds4::cuda
