// The CUDA backend over the kvcache/ paged pool: CudaKvPool's device addressing (LayerKv strides,
// frontiers, slots and block tables) lands on exactly the rows the pool's own SequenceKv view
// addresses (checked with host storage, so it runs without a GPU too); and on the GPU, the backend
// over a scheduler-owned KvCacheManager with device storage gives the own pool's logits bit for bit,
// and a sequence resumed from the prefix cache (shared blocks + boundary snapshot restored by device
// copies) continues with the same logits as the sequence that computed the prefix.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_kv.h"
#include "engine/kv_geometry.h"
#include "engine/model.h"
#include "tests/cuda/gpu_test_util.h"

namespace ds4 {
namespace {

// Every row pointer the kernels would form equals the view's, for every layer and kind.
TEST(CudaKv, AddressesMatchThePoolViews) {
  const ModelConfig c = preset_small();
  KvCacheManager manager(layout_kv_pool(kv_geometry(c), KvLayout::kF32, 12, 3, 2));  // host storage
  CudaKvPool pool(c, manager);
  std::vector<int32_t> tokens(700, 5);
  ASSERT_EQ(manager.add_sequence(7, tokens, 0, 300), KvStatus::kOk);
  ASSERT_EQ(manager.add_sequence(9, tokens, 0, 700), KvStatus::kOk);
  for (KvSeqId id : {KvSeqId(7), KvSeqId(9)}) {
    SequenceKv& view = manager.sequence_kv(id);
    int64_t slot = -1;
    std::span<const int32_t> blocks;
    ASSERT_TRUE(pool.address(view, slot, blocks));
    EXPECT_EQ(slot, manager.slot(id));
    const int64_t n = id == 7 ? 300 : 700;
    for (int il = 0; il < c.n_layer; ++il) {
      const cuda::LayerKv kv = pool.layer(il);
      for (int64_t pos : {int64_t(0), n - 1, n - 128})
        EXPECT_EQ(kv.raw + slot * kv.raw_slot_stride + (pos % kv.raw_ring_rows) * kv.head_dim, view.raw_row(il, pos));
      const int ratio = c.compress_ratio(il);
      if (ratio > 0) {
        for (int64_t r : {int64_t(0), n / ratio - 1}) {
          const int64_t block = blocks[r / kv.rows_per_block];
          EXPECT_EQ(kv.comp + block * kv.comp_block_stride + (r % kv.rows_per_block) * kv.head_dim, view.comp_row(il, r));
          if (kv.index)
            EXPECT_EQ(kv.index + block * kv.index_block_stride + (r % kv.rows_per_block) * kv.indexer_dim,
                      view.index_row(il, r));
        }
        for (bool indexer : {false, true}) {
          if (indexer && c.attention_kind(il) != AttentionKind::kCompressedSparse) continue;
          EXPECT_EQ(pool.frontier(il, indexer, false) + slot * pool.frontier_slot_stride(), view.frontier_kv(il, indexer));
          EXPECT_EQ(pool.frontier(il, indexer, true) + slot * pool.frontier_slot_stride(), view.frontier_score(il, indexer));
        }
      }
    }
  }
  // A view of another manager is refused.
  KvCacheManager other(layout_kv_pool(kv_geometry(c), KvLayout::kF32, 4, 1, 0));
  ASSERT_EQ(other.add_sequence(1, tokens, 0, 10), KvStatus::kOk);
  int64_t slot = 0;
  std::span<const int32_t> blocks;
  EXPECT_FALSE(pool.address(other.sequence_kv(1), slot, blocks));
  // Rows the kernels cannot read are refused at construction.
  KvCacheManager packed(layout_kv_pool(kv_geometry(c), KvLayout::kPacked, 4, 1, 0));
  EXPECT_THROW(CudaKvPool(c, packed), LoadError);
}

std::vector<int32_t> random_tokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(100 + rng() % 100000);
  return t;
}

// Feeds tokens[kv.num_tokens(), end) as one chunk with every logit row; returns the logits.
std::vector<float> feed(CudaBackend& gpu, SequenceKv& kv, const std::vector<int32_t>& tokens, int64_t end) {
  const int64_t begin = kv.num_tokens();
  ForwardBatch b;
  b.sequences.push_back({&kv, std::span<const int32_t>(tokens).subspan(begin, end - begin), true});
  return gpu.forward(b).logits;
}

TEST(CudaKv, SchedulerPoolAndPrefixResumeOnTheDevice) {
  DS4_REQUIRE_GPU();
  const auto m = load_model(test::binary_dir() + "/models/tiny-q2.gguf");
  const ModelConfig& c = m->config;
  const auto tokens = random_tokens(600, 3);
  // The own pool: one 600-token sequence in chunks 256, 256, 88.
  CudaBackend own(c, m->weights);
  auto own_kv = own.new_sequence();
  std::vector<float> want;
  for (int64_t end : {256, 512, 600}) {
    const auto l = feed(own, *own_kv, tokens, end);
    want.insert(want.end(), l.begin(), l.end());
  }
  // The scheduler's pool on the device, same chunks, publishing after each (snapshots at 256, 512).
  const KvPoolLayout layout = cuda_kv_layout(c, 16, 4, 4);
  KvCacheManager manager(layout, make_cuda_kv_storage(layout));
  CudaBackendOptions o;
  o.kv_manager = &manager;
  CudaBackend gpu(c, m->weights, o);
  ASSERT_EQ(manager.add_sequence(1, tokens, 0, 0), KvStatus::kOk);
  std::vector<float> got;
  for (int64_t end : {256, 512, 600}) {
    const auto l = feed(gpu, manager.sequence_kv(1), tokens, end);
    got.insert(got.end(), l.begin(), l.end());
    manager.publish(1, tokens);
  }
  EXPECT_EQ(got, want) << "the scheduler's pool gives other logits than the own pool";
  // A second sequence with the same tokens resumes at 512 from the prefix cache.
  const int64_t cached = manager.find_cached_prefix(tokens);
  EXPECT_EQ(cached, 512);
  ASSERT_EQ(manager.add_sequence(2, tokens, cached, 600), KvStatus::kOk);
  EXPECT_EQ(manager.sequence_kv(2).num_tokens(), cached);
  const auto resumed = feed(gpu, manager.sequence_kv(2), tokens, 600);
  const std::vector<float> tail(want.end() - static_cast<int64_t>(resumed.size()), want.end());
  EXPECT_EQ(resumed, tail) << "resuming from the prefix cache changed the logits";
  std::printf("[ gpu ] kvcache pool on the device: 600 positions bit-identical to the own pool; resume at %lld from "
              "the prefix cache bit-identical over %zu logits\n",
              static_cast<long long>(cached), resumed.size());
  manager.free(1);
  manager.free(2);
  EXPECT_EQ(manager.check_invariants(), "");
}

}  // namespace
}  // namespace ds4
