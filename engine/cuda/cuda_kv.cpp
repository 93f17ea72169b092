// The kvcache/ pool in device memory and its addressing for the CUDA kernels (see cuda_kv.h).
#include "engine/cuda/cuda_kv.h"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "engine/kv_geometry.h"
#include "engine/load_error.h"
#include "kernels/cuda/ops.h"

namespace ds4 {
namespace {

[[noreturn]] void kv_fail(const char* what, long long a, long long b) {
  std::fprintf(stderr, "%s:%d: CUDA KV: %s (%lld, %lld)\n", __FILE__, __LINE__, what, a, b);
  std::abort();
}

float* as_f32(std::byte* p) { return reinterpret_cast<float*>(p); }

int64_t floats_of(int64_t bytes, const char* what) {
  if (bytes % static_cast<int64_t>(sizeof(float)) != 0) throw LoadError(std::string("CUDA KV: ") + what + " is not whole floats");
  return bytes / static_cast<int64_t>(sizeof(float));
}

// Device regions of a pool layout. The backend's stream does not synchronise with the legacy
// default stream, so copy and fill wait for their own completion.
class CudaKvStorage final : public KvStorage {
 public:
  explicit CudaKvStorage(const KvPoolLayout& layout) {
    size_t free_bytes = 0, total_bytes = 0;
    DS4_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const int64_t need = layout.total_bytes();
    if (need > static_cast<int64_t>(free_bytes))
      throw LoadError("CUDA KV pool: needs " + std::to_string(need >> 20) + " MiB, the device has " +
                      std::to_string(free_bytes >> 20) + " MiB free");
    for (int r = 0; r < layout.num_regions(); ++r) {
      const auto bytes = static_cast<size_t>(layout.region_bytes(r));
      regions_.emplace_back(bytes);
      DS4_CUDA_CHECK(cudaMemset(regions_.back().get(), 0, bytes));
    }
    DS4_CUDA_CHECK(cudaDeviceSynchronize());
  }
  std::byte* region(int r) override { return regions_.at(static_cast<size_t>(r)).as<std::byte>(); }
  bool host_accessible() const override { return false; }
  void copy(int dst_region, int64_t dst_offset, int src_region, int64_t src_offset, int64_t bytes) override {
    if (bytes <= 0) return;
    DS4_CUDA_CHECK(cudaMemcpyAsync(region(dst_region) + dst_offset, region(src_region) + src_offset,
                                   static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice, nullptr));
    DS4_CUDA_CHECK(cudaStreamSynchronize(nullptr));
  }
  void fill_f32(int r, int64_t offset, int64_t count, float value) override {
    cuda::fill(as_f32(region(r) + offset), count, value, nullptr);
    DS4_CUDA_CHECK(cudaStreamSynchronize(nullptr));
  }

 private:
  std::vector<cuda::DeviceBuffer> regions_;
};

// The manager's geometry must be this model's (any raw ring of at least the window).
void check_geometry(const ModelConfig& c, const KvPoolLayout& L) {
  const KvGeometry want = kv_geometry(c);
  const KvGeometry& g = L.geometry;
  bool same = g.head_dim == want.head_dim && g.indexer_dim == want.indexer_dim && g.window == want.window &&
              g.raw_ring_rows >= g.window && g.block_tokens == cuda::kKvBlockPositions && g.n_layers() == want.n_layers();
  for (int il = 0; same && il < g.n_layers(); ++il)
    same = g.layers[il].ratio == want.layers[il].ratio && g.layers[il].indexer == want.layers[il].indexer;
  if (!same) throw LoadError("CUDA KV: the pool's geometry is not this model's");
  if (L.layout != KvLayout::kF32)
    throw LoadError(std::string("CUDA KV: the backend reads f32 rows, the pool stores ") + layout_name(L.layout));
}

}  // namespace

std::unique_ptr<KvStorage> make_cuda_kv_storage(const KvPoolLayout& layout) {
  return std::make_unique<CudaKvStorage>(layout);
}

KvPoolLayout cuda_kv_layout(const ModelConfig& config, int64_t n_blocks, int64_t max_seqs, int64_t n_snapshots) {
  try {
    return layout_kv_pool(kv_geometry(config), KvLayout::kF32, n_blocks, max_seqs, n_snapshots);
  } catch (const std::invalid_argument& e) {
    throw LoadError(std::string("CUDA KV pool: ") + e.what());
  }
}

CudaKvPool::CudaKvPool(const ModelConfig& config, int max_seqs, int64_t n_blocks) : config_(config) {
  if (max_seqs <= 0 || n_blocks <= 0) throw LoadError("CudaKvPool: need at least one slot and one block");
  const KvPoolLayout layout = cuda_kv_layout(config, n_blocks, max_seqs, 0);
  owned_ = std::make_unique<KvCacheManager>(layout, make_cuda_kv_storage(layout));
  manager_ = owned_.get();
  slot_stride_floats_ = floats_of(layout.sizes.slot_bytes, "the slot size");
}

CudaKvPool::CudaKvPool(const ModelConfig& config, KvCacheManager& manager) : config_(config), manager_(&manager) {
  check_geometry(config, manager.layout());
  slot_stride_floats_ = floats_of(manager.layout().sizes.slot_bytes, "the slot size");
}

CudaKvPool::~CudaKvPool() = default;

uint64_t CudaKvPool::block_bytes(const ModelConfig& c) {
  return static_cast<uint64_t>(kv_byte_sizes(kv_geometry(c), KvLayout::kF32).block_bytes);
}

uint64_t CudaKvPool::slot_bytes(const ModelConfig& c) {
  return static_cast<uint64_t>(kv_byte_sizes(kv_geometry(c), KvLayout::kF32).slot_bytes);
}

std::byte* CudaKvPool::slot_region() const { return manager_->storage().region(manager_->layout().slot_region()); }

std::unique_ptr<CudaSequenceKv> CudaKvPool::new_sequence() {
  if (!owned_) kv_fail("new_sequence on a pool over the scheduler's manager", 0, 0);
  const KvSeqId id = next_id_++;
  if (manager_->add_sequence(id, {}, 0, 0) != KvStatus::kOk) return nullptr;
  return std::unique_ptr<CudaSequenceKv>(new CudaSequenceKv(this, id));
}

cuda::LayerKv CudaKvPool::layer(int il) const {
  const KvPoolLayout& L = manager_->layout();
  if (il < 0 || il >= static_cast<int>(L.layers.size())) kv_fail("no such layer", il, 0);
  const KvLayerPlacement& pl = L.layers[il];
  cuda::LayerKv kv;
  kv.window = L.geometry.window;
  kv.head_dim = L.geometry.head_dim;
  kv.indexer_dim = L.geometry.indexer_dim;
  kv.ratio = L.geometry.layers[il].ratio;
  kv.raw = as_f32(slot_region() + pl.raw_offset);
  kv.raw_ring_rows = L.geometry.raw_ring_rows;
  kv.raw_slot_stride = slot_stride_floats_;
  if (pl.comp_pool >= 0) {
    const KvRowPool& p = L.row_pools[pl.comp_pool];
    kv.comp = as_f32(manager_->storage().region(pl.comp_pool) + pl.comp_pool_layer * p.layer_stride_bytes);
    kv.rows_per_block = p.rows_per_block;
    kv.comp_block_stride = floats_of(p.block_stride_bytes, "a block stride");
  }
  if (pl.index_pool >= 0) {
    const KvRowPool& p = L.row_pools[pl.index_pool];
    kv.index = as_f32(manager_->storage().region(pl.index_pool) + pl.index_pool_layer * p.layer_stride_bytes);
    kv.index_block_stride = floats_of(p.block_stride_bytes, "a block stride");
  }
  return kv;
}

float* CudaKvPool::frontier(int il, bool indexer, bool score) const {
  const KvLayerPlacement& pl = manager_->layout().layers.at(static_cast<size_t>(il));
  const int64_t offset = score ? pl.frontier_score_offset[indexer] : pl.frontier_kv_offset[indexer];
  return offset < 0 ? nullptr : as_f32(slot_region() + offset);
}

bool CudaKvPool::address(const SequenceKv& kv, int64_t& slot, std::span<const int32_t>& blocks) const {
  KvSeqId id = 0;
  if (const auto* own = dynamic_cast<const CudaSequenceKv*>(&kv); own && own->pool_ == this) {
    id = own->id_;
  } else if (const auto found = manager_->id_of(kv)) {
    id = *found;
  } else if (const auto* mirror = dynamic_cast<const PagedSequenceKv*>(&kv)) {
    // A follower rank's mirror (parallel/mirror_kv.h): slot and table from the leader's step message.
    slot = mirror->pool_slot();
    blocks = std::span<const int32_t>(mirror->pool_blocks(), static_cast<size_t>(mirror->pool_block_count()));
    return true;
  } else {
    return false;
  }
  slot = manager_->slot(id);
  blocks = manager_->block_table(id);
  return true;
}

CudaSequenceKv::~CudaSequenceKv() { pool_->manager_->free(id_); }

int64_t CudaSequenceKv::num_tokens() const { return view().num_tokens(); }
void CudaSequenceKv::set_num_tokens(int64_t n) { view().set_num_tokens(n); }
bool CudaSequenceKv::reserve(int64_t n_tokens) { return view().reserve(n_tokens); }

float* CudaSequenceKv::raw_row(int layer, int64_t pos) {
  if (pos < 0) kv_fail("negative raw position", layer, pos);
  const cuda::LayerKv kv = pool_->layer(layer);
  return kv.raw + pool_->manager_->slot(id_) * kv.raw_slot_stride + (pos % kv.raw_ring_rows) * kv.head_dim;
}

float* CudaSequenceKv::comp_row(int layer, int64_t c) {
  const cuda::LayerKv kv = pool_->layer(layer);
  const std::span<const int32_t> blocks = pool_->manager_->block_table(id_);
  if (!kv.comp || c < 0 || c / kv.rows_per_block >= static_cast<int64_t>(blocks.size()))
    kv_fail("compressed row not reserved", layer, c);
  return kv.comp + blocks[c / kv.rows_per_block] * kv.comp_block_stride + (c % kv.rows_per_block) * kv.head_dim;
}

float* CudaSequenceKv::index_row(int layer, int64_t c) {
  const cuda::LayerKv kv = pool_->layer(layer);
  const std::span<const int32_t> blocks = pool_->manager_->block_table(id_);
  if (!kv.index || c < 0 || c / kv.rows_per_block >= static_cast<int64_t>(blocks.size()))
    kv_fail("indexer row not reserved", layer, c);
  return kv.index + blocks[c / kv.rows_per_block] * kv.index_block_stride + (c % kv.rows_per_block) * kv.indexer_dim;
}

float* CudaSequenceKv::frontier_kv(int layer, bool indexer) {
  float* f = pool_->frontier(layer, indexer, false);
  if (!f) kv_fail("layer has no such compressor", layer, indexer);
  return f + pool_->manager_->slot(id_) * pool_->slot_stride_floats_;
}

float* CudaSequenceKv::frontier_score(int layer, bool indexer) {
  float* f = pool_->frontier(layer, indexer, true);
  if (!f) kv_fail("layer has no such compressor", layer, indexer);
  return f + pool_->manager_->slot(id_) * pool_->slot_stride_floats_;
}

}  // namespace ds4
