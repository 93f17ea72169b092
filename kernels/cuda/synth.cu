// Direct synthetic blocks on the GPU (see synth.h): one thread per 256-value super-block, the
// shared host/device generator of kernels/synth_blocks.h, a grid-stride loop over all blocks.
#include "kernels/cuda/synth.h"

#include <algorithm>
#include <string>

#include "kernels/cuda/cuda_check.h"

namespace ds4::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void synth_blocks_kernel(SynthBlocksParams p, uint32_t block_bytes) {
  const uint64_t total = p.n_rows * p.blocks_per_row;
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const uint64_t row = i / p.blocks_per_row, block = i % p.blocks_per_row;
    synth_block(p.type, p.scales, synth_block_seed(synth_row_seed(p.tensor_seed, p.first_row + row), block),
                p.out + i * block_bytes);
  }
}

}  // namespace

void synth_blocks(const SynthBlocksParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(synth_direct_type(p.type), "cuda::synth_blocks",
                     "type " + std::to_string(static_cast<unsigned>(p.type)) + " has no direct generator");
  if (p.n_rows == 0 || p.blocks_per_row == 0) return;
  DS4_LAUNCH_REQUIRE(p.out && reinterpret_cast<uintptr_t>(p.out) % 2 == 0, "cuda::synth_blocks", "null or odd output");
  const uint32_t block_bytes = ggml_type_info(p.type).block_bytes;
  const uint64_t total = p.n_rows * p.blocks_per_row;
  const uint64_t grid = std::min<uint64_t>((total + kThreads - 1) / kThreads, 132ull * 64);
  synth_blocks_kernel<<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(p, block_bytes);
  DS4_CUDA_LAUNCH_CHECK("synth_blocks_kernel");
}

}  // namespace ds4::cuda
