// Tensor-core path of cuda::matmul (kernels/cuda/matmul.h) for the quantised and F16 weights
// (Q8_0, Q2_K, Q4_K, IQ2_XXS, F16): mma.sync m16n8k16 in bf16 with the dequantisation fused into
// the operand load. Numerics (docs/GPU-CHECKS.md "Products"):
//   * weights enter the MMA as small integers, exact in bf16 (Q8_0 q, IQ2_XXS ±grid, Q2_K sc·q,
//     Q4_K q) or, for F16, as an exact bf16 hi + lo pair; each 32-value sub-chunk's MMA sum is
//     multiplied by its block scale in f32 (d, d·(2s+1)/8, d, d·sc) and K-quant minimums are
//     subtracted as dmin·m·Σx with Σx summed in f32;
//   * activations are split EXACTLY into three bf16 parts x = hi + mid + lo (bit masking, no
//     rounding), so every product w·x is exact and the only error is the summation: three MMA
//     chains per 32-value sub-chunk (hi·hi, the 2^-8 terms, the 2^-16 terms; ≤ 4 MMAs each, f32
//     tensor-core accumulation) added in f32, then f32 adds over the sub-chunks and the k parts.
//     Contract: |y − Σ w·x| ≤ 1e-5·Σ|w·x| (the CPU dot contract, what cuda_matmul_test checks).
// Work layout: a warp owns 32 output rows (two m16 tiles) and 32 tokens per pass (four n8
// tiles; decode-sized calls of ≤ 8 tokens take a one-tile, 8-token variant with more warps per SM,
// 9-16 tokens a two-tile one, prefill-sized calls a 64-token one; the same per-element arithmetic
// in all), so each weight byte is read once per pass's tokens (plain mode: the token slabs run as
// parallel blocks, re-reading their rows mostly from L2); the k range is split over the warps
// of a block and the blocks of a thread-block cluster (split-K through distributed shared
// memory), the split chosen from the matrix shape alone and the parts added in a fixed order:
// each token's result is bit-identical whatever the batch (batch invariance).
#pragma once
#include <cuda_runtime.h>

#include "kernels/cuda/matmul.h"

namespace ds4::cuda {

// True when the tensor-core path computes p (its type, and a grouped output projection whose
// groups are multiples of 32 rows); matmul() falls back to the CUDA-core kernel otherwise.
bool mma_matmul_handles(const MatmulParams& p);

// Launches the tensor-core product on `stream`; p has been validated by matmul().
void mma_matmul(const MatmulParams& p, cudaStream_t stream);

// Launches a and b as one grid (b's row blocks after a's) when they share the activations, token
// list, format and k split, each output bit-identical to its own mma_matmul; false (nothing
// launched) otherwise or with DS4_MMA_PAIRS=0. Both validated and mma_matmul_handles'.
bool mma_matmul_pair(const MatmulParams& a, const MatmulParams& b, cudaStream_t stream);

}  // namespace ds4::cuda
