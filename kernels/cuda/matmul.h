// Dequantising matrix products on the GPU against weights stored as in the GGUF (F32, F16, BF16,
// Q8_0, Q2_K, Q4_K, IQ2_XXS): y[t, o] = Σ_i W[o, i] · x[t, i] within 1e-5·Σ|W·x| (the CPU dot
// contract, kernels/cpu_ops.h matmul). Q8_0, Q2_K, Q4_K, IQ2_XXS and F16 run on the tensor cores
// (mma_matmul.h: exact products, weights read once per 32 tokens); F32 and BF16 on CUDA cores (one
// warp or a fixed split of warps per row, once per tile of 8 tokens). Every token's sum is computed
// in the same order whatever the batch, so results are batch invariant (bit-identical).
// Grouped mode (routed experts) runs one weight matrix per group over that group's token list.
// Called by engine/cuda (CudaBackend), the GPU tests and the micro-benchmarks.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/ggml_type.h"

namespace ds4::cuda {

struct MatmulParams {
  const uint8_t* w = nullptr;  // device: n_out rows of row_bytes (per group in grouped mode)
  GgmlType type = GgmlType::F32;
  int64_t n_in = 0;            // values per row (multiple of 32 and of the type's block)
  int64_t n_out = 0;           // rows
  uint64_t row_bytes = 0;      // ggml_row_bytes(type, n_in)
  const float* x = nullptr;    // device [*, x_stride] f32, 16-byte aligned rows
  int64_t x_stride = 0;        // floats between consecutive x rows
  float* y = nullptr;          // device [*, y_stride] f32
  int64_t y_stride = 0;
  int64_t n_tokens = 0;        // plain mode: rows 0..n_tokens-1 of x and y; grouped mode: the
                               // total list entries if known, else 0 (picks the faster tiling only)
  // Output row o reads x columns [(o / x_group_rows) · n_in, +n_in) (grouped output projection);
  // 0: every row reads columns [0, n_in).
  int64_t x_group_rows = 0;
  // Grouped mode when n_groups > 0: group g multiplies matrix g (w + g · group_stride_bytes) with
  // list entries [group_offsets[g], group_offsets[g+1]), entry i reading x row x_rows[i] and
  // writing y row y_rows[i]. Offsets and rows are device arrays; empty groups cost one idle block.
  int64_t n_groups = 0;
  uint64_t group_stride_bytes = 0;
  const int32_t* group_offsets = nullptr;  // device [n_groups + 1]
  // Optional: only the groups group_list[0 .. *group_count) run (the experts that received
  // tokens, from moe_group), one block row each; grid_groups bounds *group_count (host side).
  const int32_t* group_list = nullptr;     // device [grid_groups]
  const int32_t* group_count = nullptr;    // device [1]
  int64_t grid_groups = 0;
  const int32_t* x_rows = nullptr;         // device [total entries]
  const int32_t* y_rows = nullptr;         // device [total entries]
  // Optional: x already split into its exact bf16 planes by split_x_planes (row r of x at
  // x_planes + r · x_plane_row_bytes(n_in)). The IQ2_XXS and Q2_K tensor-core kernels read
  // them instead of splitting x in every warp (same values: the bits do not change); the other
  // paths read x, which stays required. Only with x_group_rows == 0; 16-byte aligned.
  const uint8_t* x_planes = nullptr;
  // Forces the CUDA-core kernel for every type (benchmarks and tests compare the two paths).
  bool cuda_cores = false;
};

// True when p's product reads MatmulParams::x_planes (given them): a tensor-core IQ2_XXS or Q2_K
// product without x_group_rows.
bool reads_x_planes(const MatmulParams& p);

// Bytes per row of split_x_planes' output: the hi, mid and lo bf16 planes of n_in values, then
// the f32 sum of each 8 consecutive values (the K-quants' Σx); n_in a multiple of 32.
int64_t x_plane_row_bytes(int64_t n_in);

// Splits rows [0, n_rows) of x ([*, x_stride] f32, 16-byte aligned rows) into planes
// (n_rows · x_plane_row_bytes(n_in) bytes, 16-byte aligned) for MatmulParams::x_planes.
void split_x_planes(const float* x, int64_t x_stride, int64_t n_rows, int64_t n_in, uint8_t* planes, cudaStream_t stream);

// Validates the shapes (aborting with the problem) and launches on `stream`.
void matmul(const MatmulParams& p, cudaStream_t stream);

// matmul(a) then matmul(b), as one launch where the tensor-core path can (the same x, token list,
// weight format and n_in, e.g. a layer's gate and up products): bit-identical to the two calls.
void matmul_pair(const MatmulParams& a, const MatmulParams& b, cudaStream_t stream);

// Dequantises rows of a weight matrix: out[i, :] = row rows[i] of w (n_in values), i < n_rows.
// rows is a device array (e.g. token ids for the embedding). Exact (== dequantize_row_ref).
struct DequantRowsParams {
  const uint8_t* w = nullptr;
  GgmlType type = GgmlType::F32;
  int64_t n_in = 0;
  uint64_t row_bytes = 0;
  const int32_t* rows = nullptr;  // device [n_rows]
  int64_t n_rows = 0;
  float* out = nullptr;           // device [n_rows, out_stride]
  int64_t out_stride = 0;
  int copies = 1;                 // write each row `copies` times, n_in apart (hyper-connection streams)
};
void dequant_rows(const DequantRowsParams& p, cudaStream_t stream);

// True for the weight types the GPU kernels decode.
bool cuda_type_supported(GgmlType type);

}  // namespace ds4::cuda
