// The CUDA backend's KV state is the kvcache/ paged pool (KvCacheManager: block tables, slots,
// prefix cache with boundary snapshots) with its regions in device memory (make_cuda_kv_storage)
// and f32 rows. CudaKvPool turns the pool's layout into device addresses and strides for the
// kernels (cuda::LayerKv, frontiers) and maps a batch's SequenceKv to its slot and block table.
// It either owns a manager (CudaBackend::new_sequence: tests, benches) or uses one the scheduler
// owns (PagedKvPool over a device storage). CudaSequenceKv is a sequence of an owning pool; its row
// pointers are DEVICE addresses. Owned and used by the engine thread only.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/model_config.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/device_buffer.h"
#include "kvcache/kv_cache_manager.h"
#include "kvcache/sequence_kv.h"

namespace ds4 {

class CudaSequenceKv;

// Device memory for every region of the layout (zeroed); copy and fill run on the device and
// complete before returning. Throws LoadError when the device lacks the memory.
std::unique_ptr<KvStorage> make_cuda_kv_storage(const KvPoolLayout& layout);

// The pool layout the CUDA backend plans for a model: f32 rows, raw ring = the sliding window.
KvPoolLayout cuda_kv_layout(const ModelConfig& config, int64_t n_blocks, int64_t max_seqs, int64_t n_snapshots);

class CudaKvPool {
 public:
  // Owns a manager over device storage: max_seqs slots, n_blocks blocks, no prefix snapshots.
  CudaKvPool(const ModelConfig& config, int max_seqs, int64_t n_blocks);
  // Uses `manager` (must outlive this pool). Throws LoadError when its geometry is not this
  // model's or its rows are not f32. The kernels need its storage on the device; host storage is
  // accepted only so address arithmetic can be checked without a GPU.
  CudaKvPool(const ModelConfig& config, KvCacheManager& manager);
  ~CudaKvPool();

  // A fresh sequence of the owned manager (frontiers reset), or null when every slot is in use.
  // Aborts on a pool over an external manager (the scheduler admits sequences there).
  std::unique_ptr<CudaSequenceKv> new_sequence();
  cuda::LayerKv layer(int il) const;
  float* frontier(int il, bool indexer, bool score) const;  // slot 0's frontier; slots frontier_slot_stride() apart
  int64_t frontier_slot_stride() const { return slot_stride_floats_; }
  // Slot and block table of a batch sequence; false when kv is none of this pool's CudaSequenceKv
  // handles, its manager's views, or a PagedSequenceKv (a follower rank's mirror of the same layout).
  bool address(const SequenceKv& kv, int64_t& slot, std::span<const int32_t>& blocks) const;

  const ModelConfig& config() const { return config_; }
  KvCacheManager& manager() { return *manager_; }
  uint64_t bytes() const { return static_cast<uint64_t>(manager_->layout().total_bytes()); }
  // Device bytes one block adds (compressed and indexer rows of 256 positions over all layers) and
  // one slot adds (raw-window rings and compressor frontiers): capacity planning.
  static uint64_t block_bytes(const ModelConfig& config);
  static uint64_t slot_bytes(const ModelConfig& config);

 private:
  friend class CudaSequenceKv;
  std::byte* slot_region() const;

  ModelConfig config_;
  std::unique_ptr<KvCacheManager> owned_;
  KvCacheManager* manager_ = nullptr;
  int64_t slot_stride_floats_ = 0;
  KvSeqId next_id_ = 1;
};

class CudaSequenceKv final : public SequenceKv {
 public:
  ~CudaSequenceKv() override;
  int64_t num_tokens() const override;
  void set_num_tokens(int64_t n) override;
  bool reserve(int64_t n_tokens) override;
  // Device addresses (see the file comment).
  float* raw_row(int layer, int64_t pos) override;
  float* comp_row(int layer, int64_t c) override;
  float* index_row(int layer, int64_t c) override;
  float* frontier_kv(int layer, bool indexer) override;
  float* frontier_score(int layer, bool indexer) override;

  const CudaKvPool* pool() const { return pool_; }
  KvSeqId id() const { return id_; }

 private:
  friend class CudaKvPool;
  CudaSequenceKv(CudaKvPool* pool, KvSeqId id) : pool_(pool), id_(id) {}
  SequenceKv& view() const { return pool_->manager_->sequence_kv(id_); }
  CudaKvPool* pool_;
  KvSeqId id_;
};

}  // namespace ds4
