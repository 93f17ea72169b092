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

// First raw position a token at pos of sequence seq attends to: the window's start, not before
// the sequence's window start (StepBatch::seq_window_start) or position 0.
__device__ __forceinline__ int64_t raw_window_lo(const StepBatch& b, const LayerKv& kv, int seq, int64_t pos) {
  int64_t lo = pos - kv.window + 1 > 0 ? pos - kv.window + 1 : 0;
  if (b.seq_window_start && b.seq_window_start[seq] > lo) lo = b.seq_window_start[seq];
  return lo;
}

// kv with the dense defaults of its strides filled in (host side, attention.cu).
LayerKv resolved(LayerKv kv, const char* kernel);

}  // namespace ds4::cuda
