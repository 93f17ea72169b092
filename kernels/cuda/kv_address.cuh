// Device addressing of the paged KV layout (attention.h LayerKv / StepBatch): a compressed or
// indexer row through the sequence's block table, a raw row in the slot's ring. Included by
// attention.cu and attention_split.cu.
#pragma once
#include "kernels/cuda/attention.h"

namespace ds4::cuda {

__device__ __forceinline__ float* block_row(const StepBatch& b, float* store, int rows_per_block, int64_t block_stride,
                                            int dim, int seq, int64_t c) {
  const int64_t block = b.block_table[static_cast<int64_t>(seq) * b.max_blocks + c / rows_per_block];
  return store + block * block_stride + (c % rows_per_block) * dim;
}

// Ring row of position pos in slot `slot` (LayerKv with its strides resolved).
__device__ __forceinline__ float* raw_ring_row(const LayerKv& kv, int slot, int64_t pos) {
  return kv.raw + static_cast<int64_t>(slot) * kv.raw_slot_stride + (pos % kv.raw_ring_rows) * kv.head_dim;
}

// kv with the dense defaults of its strides filled in (host side, attention.cu).
LayerKv resolved(LayerKv kv, const char* kernel);

}  // namespace ds4::cuda
