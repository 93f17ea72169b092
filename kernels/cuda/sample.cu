// GPU sampler (see sample.h). Three steps over n_rows rows of logits: prepare (one block per row:
// first maximum, f64 weights, their total, the min-p count and last min-p candidate), a stable
// segmented radix sort of the weights in descending order (only when some row uses top-k or
// top-p; stability gives ties to the lower id, as the CPU comparator does), and the draw (one
// block per row: top-p cut and proportional draw by block-wide prefix sums over the candidates).
#include "kernels/cuda/sample.h"

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>
#include <cuda/functional>

#include <cfloat>
#include <cmath>
#include <climits>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/splitmix64.h"

namespace ds4::cuda {
namespace {

constexpr int kThreads = 512;  // 1024 spills registers in draw_kernel

struct RowStats {
  double total = 0.0;       // Σ weights
  int32_t n_min_p = 0;      // weights >= min_p (a prefix of the descending order)
  int32_t last_candidate = 0;  // highest id with weight >= min_p (the index-order fallback)
};

// The device arrays of the workspace (carved by layout()).
struct Workspace {
  SampleRow* rows = nullptr;
  RowStats* stats = nullptr;
  double *weights = nullptr, *sorted_weights = nullptr;  // [n_rows, n_vocab]
  int32_t *ids = nullptr, *sorted_ids = nullptr;         // [n_rows, n_vocab]
  int32_t* offsets = nullptr;                            // [n_rows + 1] segment starts
  void* sort_temp = nullptr;
  size_t sort_temp_bytes = 0;
  size_t total = 0;
};

size_t align256(size_t v) { return (v + 255) / 256 * 256; }

size_t sort_temp_bytes(int64_t n_rows, int64_t n_vocab) {
  size_t bytes = 0;
  const int n = static_cast<int>(n_rows * n_vocab);
  DS4_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
      nullptr, bytes, static_cast<const double*>(nullptr), static_cast<double*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), n, static_cast<int>(n_rows),
      static_cast<const int32_t*>(nullptr), static_cast<const int32_t*>(nullptr)));
  return bytes;
}

Workspace layout(void* base, int64_t n_rows, int64_t n_vocab) {
  Workspace w;
  uint8_t* p = static_cast<uint8_t*>(base);
  size_t at = 0;
  auto take = [&](auto*& ptr, size_t bytes) {
    ptr = reinterpret_cast<std::remove_reference_t<decltype(ptr)>>(p ? p + at : nullptr);
    at += align256(bytes);
  };
  const size_t cells = static_cast<size_t>(n_rows * n_vocab);
  take(w.rows, sizeof(SampleRow) * n_rows);
  take(w.stats, sizeof(RowStats) * n_rows);
  take(w.weights, sizeof(double) * cells);
  take(w.sorted_weights, sizeof(double) * cells);
  take(w.ids, sizeof(int32_t) * cells);
  take(w.sorted_ids, sizeof(int32_t) * cells);
  take(w.offsets, sizeof(int32_t) * (n_rows + 1));
  w.sort_temp_bytes = sort_temp_bytes(n_rows, n_vocab);
  w.sort_temp = p ? p + at : nullptr;
  at += align256(w.sort_temp_bytes);
  w.total = at;
  return w;
}

bool greedy(const SampleRow& r, int64_t n_vocab) { return r.temperature <= 0.0f || n_vocab == 1; }
__device__ bool greedy_dev(const SampleRow& r, int64_t n_vocab) { return r.temperature <= 0.0f || n_vocab == 1; }

// engine/sampler.cpp sampling_uniform: uniform in [0, 1) for draw `step` of seed `seed`.
__device__ double sampling_uniform_dev(uint64_t seed, uint64_t step) {
  return static_cast<double>(splitmix64(splitmix64(seed) ^ (step * 0xd1b54a32d192ed03ull)) >> 11) * 0x1.0p-53;
}

struct MaxAt {
  float value;
  int32_t index;
};
struct FirstMax {
  __device__ MaxAt operator()(const MaxAt& a, const MaxAt& b) const {
    if (a.value != b.value) return a.value > b.value ? a : b;
    return a.index < b.index ? a : b;
  }
};

__global__ void __launch_bounds__(kThreads) prepare_kernel(SampleParams p, Workspace ws) {
  const int64_t r = blockIdx.x, V = p.n_vocab;
  const float* logits = p.logits + r * p.logits_stride;
  const SampleRow row = ws.rows[r];
  using MaxReduce = cub::BlockReduce<MaxAt, kThreads>;
  using SumReduce = cub::BlockReduce<double, kThreads>;
  using IntReduce = cub::BlockReduce<int32_t, kThreads>;
  __shared__ union {
    typename MaxReduce::TempStorage max;
    typename SumReduce::TempStorage sum;
    typename IntReduce::TempStorage count;
  } tmp;
  __shared__ MaxAt s_best;
  MaxAt best{-INFINITY, INT32_MAX};
  for (int64_t i = threadIdx.x; i < V; i += kThreads) best = FirstMax()(best, MaxAt{logits[i], static_cast<int32_t>(i)});
  best = MaxReduce(tmp.max).Reduce(best, FirstMax());
  if (threadIdx.x == 0) s_best = best;
  __syncthreads();
  best = s_best;
  double* w = ws.weights + r * V;
  int32_t* ids = ws.ids + r * V;
  const bool is_greedy = greedy_dev(row, V);
  if (is_greedy && threadIdx.x == 0) p.tokens[r] = best.index;
  double total = 0.0;
  int32_t count = 0, last = -1;
  for (int64_t i = threadIdx.x; i < V; i += kThreads) {
    // Same expression as the CPU: (double(l) − float max) / float temperature, in f64.
    const double wi = is_greedy ? 0.0 : exp((static_cast<double>(logits[i]) - best.value) / row.temperature);
    w[i] = wi;
    ids[i] = static_cast<int32_t>(i);
    total += wi;
    if (wi >= row.min_p) ++count, last = static_cast<int32_t>(i);
  }
  total = SumReduce(tmp.sum).Sum(total);
  __syncthreads();
  count = IntReduce(tmp.count).Sum(count);
  __syncthreads();
  last = IntReduce(tmp.count).Reduce(last, ::cuda::maximum<>{});
  if (threadIdx.x == 0) ws.stats[r] = RowStats{total, count, last};
  if (r == 0 && threadIdx.x == 0)
    for (int64_t s = 0; s <= p.n_rows; ++s) ws.offsets[s] = static_cast<int32_t>(s * V);
}

// First k in [0, n) with pred(k, Σ_{j<k} w_j, Σ_{j<=k} w_j), scanning tiles of kThreads values;
// returns it (n when none) and before = Σ_{j<k} w_j (the total when none).
struct ScanHit {
  int64_t index;
  double before;
};
template <typename WeightAt, typename Pred>
__device__ ScanHit scan_first(WeightAt weight_at, int64_t n, Pred pred) {
  using Scan = cub::BlockScan<double, kThreads>;
  using MinReduce = cub::BlockReduce<int64_t, kThreads>;
  __shared__ union {
    typename Scan::TempStorage scan;
    typename MinReduce::TempStorage min;
  } tmp;
  __shared__ int64_t s_hit;
  __shared__ double s_before;
  double carry = 0.0;
  for (int64_t base = 0; base < n; base += kThreads) {
    const int64_t k = base + threadIdx.x;
    const double wk = k < n ? weight_at(k) : 0.0;
    double excl = 0.0, tile_total = 0.0;
    Scan(tmp.scan).ExclusiveSum(wk, excl, tile_total);
    __syncthreads();
    const double before = carry + excl;
    const int64_t hit = k < n && pred(k, before, before + wk) ? k : INT64_MAX;
    const int64_t first = MinReduce(tmp.min).Reduce(hit, ::cuda::minimum<>{});
    if (threadIdx.x == 0) s_hit = first;
    __syncthreads();
    if (s_hit != INT64_MAX) {
      if (k == s_hit) s_before = before;
      __syncthreads();
      return {s_hit, s_before};
    }
    carry += tile_total;
  }
  return {n, carry};
}

__global__ void __launch_bounds__(kThreads) draw_kernel(SampleParams p, Workspace ws) {
  const int64_t r = blockIdx.x, V = p.n_vocab;
  const SampleRow row = ws.rows[r];
  if (greedy_dev(row, V)) return;
  const RowStats st = ws.stats[r];
  const double u = sampling_uniform_dev(row.seed, row.step);
  if (row.top_k > 0 || row.top_p < 1.0f) {  // candidates: a prefix of the descending order
    const double* w = ws.sorted_weights + r * V;
    const int32_t* ids = ws.sorted_ids + r * V;
    int64_t keep = st.n_min_p;
    if (row.top_k > 0 && row.top_k < keep) keep = row.top_k;
    auto weight_at = [w](int64_t k) { return w[k]; };
    double kept;
    if (row.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p · total (at least one)
      const double threshold = row.top_p * st.total;
      const ScanHit cut = scan_first(weight_at, keep, [threshold](int64_t k, double before, double) {
        return k >= 1 && before >= threshold;
      });
      keep = cut.index, kept = cut.before;
    } else {
      kept = scan_first(weight_at, keep, [](int64_t, double, double) { return false; }).before;
    }
    const double target = u * kept;
    const ScanHit hit = scan_first(weight_at, keep, [target](int64_t, double, double incl) { return incl > target; });
    if (threadIdx.x == 0) p.tokens[r] = ids[hit.index < keep ? hit.index : keep - 1];
    return;
  }
  // Index order over the min-p candidates.
  const double* w = ws.weights + r * V;
  const double min_p = row.min_p;
  auto weight_at = [w, min_p](int64_t k) { return w[k] >= min_p ? w[k] : 0.0; };
  const double kept = scan_first(weight_at, V, [](int64_t, double, double) { return false; }).before;
  const double target = u * kept;
  const ScanHit hit = scan_first(weight_at, V, [target](int64_t, double, double incl) { return incl > target; });
  if (threadIdx.x == 0) p.tokens[r] = hit.index < V ? static_cast<int32_t>(hit.index) : st.last_candidate;
}

}  // namespace

size_t sample_workspace_bytes(int64_t n_rows, int64_t n_vocab) {
  if (n_rows <= 0 || n_vocab <= 0) return 0;
  return layout(nullptr, n_rows, n_vocab).total;
}

void sample(const SampleParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.n_rows >= 0 && p.n_vocab > 0 && p.logits_stride >= p.n_vocab, "cuda::sample", "bad shape");
  DS4_LAUNCH_REQUIRE(p.n_rows * p.n_vocab < INT32_MAX, "cuda::sample", "more than 2^31 logits in one call");
  if (p.n_rows == 0) return;
  DS4_LAUNCH_REQUIRE(p.logits && p.rows && p.tokens && p.workspace, "cuda::sample", "null pointer");
  const Workspace ws = layout(p.workspace, p.n_rows, p.n_vocab);
  DS4_LAUNCH_REQUIRE(p.workspace_bytes >= ws.total, "cuda::sample",
                     "workspace of " + std::to_string(p.workspace_bytes) + " bytes, needs " + std::to_string(ws.total));
  bool need_sort = false;
  for (int64_t r = 0; r < p.n_rows; ++r) {
    const SampleRow& row = p.rows[r];
    DS4_LAUNCH_REQUIRE(row.top_p > 0.0f && row.top_p <= 1.0f && row.min_p >= 0.0f && row.min_p <= 1.0f && row.top_k >= 0,
                       "cuda::sample", "row " + std::to_string(r) + ": top_p, min_p or top_k out of range");
    need_sort |= !greedy(row, p.n_vocab) && (row.top_k > 0 || row.top_p < 1.0f);
  }
  DS4_CUDA_CHECK(cudaMemcpyAsync(ws.rows, p.rows, sizeof(SampleRow) * p.n_rows, cudaMemcpyHostToDevice, stream));
  prepare_kernel<<<static_cast<unsigned>(p.n_rows), kThreads, 0, stream>>>(p, ws);
  DS4_CUDA_LAUNCH_CHECK("sample prepare_kernel");
  if (need_sort) {
    size_t temp = ws.sort_temp_bytes;
    DS4_CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        ws.sort_temp, temp, ws.weights, ws.sorted_weights, ws.ids, ws.sorted_ids, static_cast<int>(p.n_rows * p.n_vocab),
        static_cast<int>(p.n_rows), ws.offsets, ws.offsets + 1, 0, 64, stream));
  }
  draw_kernel<<<static_cast<unsigned>(p.n_rows), kThreads, 0, stream>>>(p, ws);
  DS4_CUDA_LAUNCH_CHECK("sample draw_kernel");
}

}  // namespace ds4::cuda
