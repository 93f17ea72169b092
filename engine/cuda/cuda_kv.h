// Device-resident KV state of the CUDA backend, laid out like the paged pool of DESIGN.md so the
// kvcache/ pool's block tables can replace it: compressed and indexer rows live in blocks of
// kKvBlockPositions positions (rows_per_block = 256 / ratio per layer) shared by all layers and
// addressed through each sequence's block table; the raw-window ring and the compressor
// frontiers live in a per-sequence slot. CudaSequenceKv implements SequenceKv; its row pointers
// are DEVICE addresses (read them with cudaMemcpy). Owned and used by the engine thread only.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/model_config.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/device_buffer.h"
#include "kvcache/sequence_kv.h"

namespace ds4 {

class CudaSequenceKv;

class CudaKvPool {
 public:
  // max_seqs slots; n_blocks blocks of kKvBlockPositions positions in total. Throws LoadError when
  // a compress ratio does not divide the block size.
  CudaKvPool(const ModelConfig& config, int max_seqs, int64_t n_blocks);
  // A fresh sequence (frontiers reset), or null when every slot is in use.
  std::unique_ptr<CudaSequenceKv> new_sequence(cudaStream_t stream);
  cuda::LayerKv layer(int il) const;
  float* frontier(int il, bool indexer, bool score) const;
  const ModelConfig& config() const { return config_; }
  int64_t free_blocks() const { return static_cast<int64_t>(free_blocks_.size()); }
  uint64_t bytes() const;
  // Device bytes one block adds (compressed and indexer rows of kKvBlockPositions positions over
  // all layers) and one slot adds (raw-window rings and compressor frontiers): capacity planning.
  static uint64_t block_bytes(const ModelConfig& config);
  static uint64_t slot_bytes(const ModelConfig& config);

 private:
  friend class CudaSequenceKv;
  struct Layer {
    cuda::DeviceBuffer raw, comp, index;
    cuda::DeviceBuffer frontier_kv[2], frontier_score[2];  // [0] attention, [1] indexer
  };
  void release(int slot, const std::vector<int32_t>& blocks);
  bool take_blocks(size_t count, std::vector<int32_t>& blocks);

  ModelConfig config_;
  int max_seqs_;
  std::vector<Layer> layers_;
  std::vector<int> free_slots_;
  std::vector<int32_t> free_blocks_;
};

class CudaSequenceKv final : public SequenceKv {
 public:
  ~CudaSequenceKv() override;
  int64_t num_tokens() const override { return n_tokens_; }
  void set_num_tokens(int64_t n) override { n_tokens_ = n; }
  bool reserve(int64_t n_tokens) override;
  // Device addresses (see the file comment).
  float* raw_row(int layer, int64_t pos) override;
  float* comp_row(int layer, int64_t c) override;
  float* index_row(int layer, int64_t c) override;
  float* frontier_kv(int layer, bool indexer) override;
  float* frontier_score(int layer, bool indexer) override;

  const CudaKvPool* pool() const { return pool_; }
  int slot() const { return slot_; }
  const std::vector<int32_t>& blocks() const { return blocks_; }

 private:
  friend class CudaKvPool;
  CudaSequenceKv(CudaKvPool* pool, int slot) : pool_(pool), slot_(slot) {}
  CudaKvPool* pool_;
  int slot_;
  std::vector<int32_t> blocks_;
  int64_t n_tokens_ = 0;
};

}  // namespace ds4
