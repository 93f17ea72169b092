// Row-wise GPU ops of ops.h. Transcendentals are evaluated in f64 and rounded to f32 (the CPU
// reference calls the f32 libm functions, which are within an ulp of that); norms reduce in f64
// in a fixed tree. Each kernel's per-row arithmetic is independent of the batch.
#include "kernels/cuda/ops.h"

#include "kernels/cuda/fused_ops.h"

#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/hc_math.cuh"
#include "kernels/cuda/reduce.cuh"

namespace ds4::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float softplus_f(float v) {
  if (v > 20.0f) return v;
  if (v < -20.0f) return exp_f(v);
  return static_cast<float>(log1p(static_cast<double>(exp_f(v))));
}

unsigned blocks_for(int64_t n, int threads = kThreads) { return static_cast<unsigned>((n + threads - 1) / threads); }

constexpr int kNormBatch = 8;  // values of a row a thread loads before it uses any

// Thread i sums x[i + k·blockDim]² in k order, then block_sum: a fixed tree. The loads go out
// kNormBatch at a time (a 1-4K row is one memory round trip, not one per value).
__global__ void rms_norm_kernel(RmsNormParams p) {
  const float* x = p.x + blockIdx.x * p.x_stride;
  float* out = p.out + blockIdx.x * p.out_stride;
  const int64_t step = static_cast<int64_t>(blockDim.x);
  double sum = 0.0;
  for (int64_t i0 = threadIdx.x; i0 < p.width; i0 += kNormBatch * step) {
    float v[kNormBatch];
#pragma unroll
    for (int u = 0; u < kNormBatch; ++u) v[u] = i0 + u * step < p.width ? x[i0 + u * step] : 0.0f;
#pragma unroll
    for (int u = 0; u < kNormBatch; ++u)
      if (i0 + u * step < p.width) sum += static_cast<double>(v[u]) * v[u];
  }
  sum = block_sum(sum);
  const float inv = static_cast<float>(1.0 / sqrt(sum / static_cast<double>(p.width) + static_cast<double>(p.eps)));
  for (int64_t i0 = threadIdx.x; i0 < p.width; i0 += kNormBatch * step) {
    float v[kNormBatch], w[kNormBatch];
#pragma unroll
    for (int u = 0; u < kNormBatch; ++u) {
      const int64_t i = i0 + u * step;
      v[u] = i < p.width ? x[i] : 0.0f;
      w[u] = p.weight && i < p.width ? p.weight[i] : 1.0f;
    }
#pragma unroll
    for (int u = 0; u < kNormBatch; ++u) {
      const int64_t i = i0 + u * step;
      const float y = v[u] * inv;
      if (i < p.width) out[i] = p.weight ? y * w[u] : y;
    }
  }
}

__global__ void rope_kernel(RopeParams p) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= p.n_rows * p.n_pairs) return;
  const int64_t r = id / p.n_pairs;
  const int j = static_cast<int>(id % p.n_pairs);
  const double angle = static_cast<double>(p.pos[r / p.rows_per_token]) * p.freq[j];
  double s, c;
  sincos(angle, &s, &c);
  const float cf = static_cast<float>(c);
  const float sf = static_cast<float>(p.inverse ? -s : s);
  float* tail = p.x + r * p.row_stride + p.width - 2 * p.n_pairs;
  const float x0 = tail[2 * j], x1 = tail[2 * j + 1];
  tail[2 * j] = x0 * cf - x1 * sf;
  tail[2 * j + 1] = x0 * sf + x1 * cf;
}

__global__ void swiglu_kernel(SwigluParams p) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= p.n_rows * p.width) return;
  const float g = fminf(p.gate[id], p.limit);
  const float u = fminf(fmaxf(p.up[id], -p.limit), p.limit);
  const float w = p.row_weight ? p.row_weight[id / p.width] : 1.0f;
  p.mid[id] = silu_f(g) * u * w;
}

// One warp per token (hc ≤ 4): hc_coef_warp, the serial arithmetic spread over the matrix's lanes.
__global__ void hc_coef_warp_kernel(HcCoefParams p) {
  __shared__ float coef[32];
  const int64_t t = blockIdx.x;
  const int n_mix = (2 + p.hc) * p.hc, lane = threadIdx.x;
  const float mix = lane < n_mix ? p.mix[t * n_mix + lane] : 0.0f;
  hc_coef_warp(mix, p.scale, p.base, p.hc, p.sinkhorn_iters, p.eps, coef);
  if (lane < n_mix) p.coef[t * n_mix + lane] = coef[lane];
}

__global__ void hc_coef_kernel(HcCoefParams p) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= p.n_tokens) return;
  const int hc = p.hc, n_mix = (2 + hc) * hc;
  hc_coef_from_mix(p.mix + t * n_mix, p.scale, p.base, hc, p.sinkhorn_iters, p.eps, p.coef + t * n_mix);
}

__global__ void hc_pre_kernel(HcPreParams p) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= p.n_tokens * p.n_embd) return;
  const int64_t t = id / p.n_embd, d = id % p.n_embd;
  const float* pre = p.coef + t * (2 + p.hc) * p.hc;
  const float* h = p.states + t * p.hc * p.n_embd + d;
  float x = 0.0f;
  for (int s = 0; s < p.hc; ++s) x += pre[s] * h[s * p.n_embd];
  p.x[id] = x;
}

__global__ void hc_post_kernel(HcPostParams p) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= p.n_tokens * p.n_embd) return;
  const int64_t t = id / p.n_embd, d = id % p.n_embd;
  const int hc = p.hc;
  const float* coef = p.coef + t * (2 + hc) * hc;
  const float* post = coef + hc;
  const float* comb = coef + 2 * hc;
  const float* h = p.states + t * hc * p.n_embd + d;
  float* out = p.out + t * hc * p.n_embd + d;
  const float y = p.y[id];
  for (int b = 0; b < hc; ++b) {
    float v = post[b] * y;
    for (int a = 0; a < hc; ++a) v += comb[a * hc + b] * h[a * p.n_embd];
    out[b * p.n_embd] = v;
  }
}

__global__ void hc_collapse_kernel(HcCollapseParams p) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= p.n_tokens * p.n_embd) return;
  const int64_t t = id / p.n_embd, d = id % p.n_embd;
  const float* h = p.states + t * p.hc * p.n_embd + d;
  float acc = 0.0f;
  for (int i = 0; i < p.hc; ++i) {
    const float wi = sigmoid_f(p.mix[t * p.hc + i] * p.scale[0] + p.base[i]) + p.eps;
    acc += wi * h[i * p.n_embd];
  }
  p.out[id] = acc;
}

constexpr int kMaxRouteK = 32;

// The chosen expert of round j for lane j (k rounds of a warp argmax over biased[], "larger value,
// then lower index" as block_argmax: under that total order any scan order picks the same one), or
// the hash table's; lanes >= k get -1. Warp 0 only.
__device__ int route_choose_warp(const RouterParams& p, int64_t t, float* biased) {
  const int lane = threadIdx.x & 31;
  int mine = -1;
  for (int j = 0; j < p.k; ++j) {
    int e_j;
    if (p.hash_table) {
      e_j = p.hash_table[static_cast<int64_t>(p.tokens[t]) * p.k + j];
    } else {
      ArgMax best{-INFINITY, -1};
      for (int e = lane; e < p.n_expert; e += 32) best = argmax_better(best, ArgMax{biased[e], e});
      e_j = warp_argmax(best).index;
      __syncwarp();
      if (lane == 0) biased[e_j] = -INFINITY;
      __syncwarp();
    }
    if (lane == j) mine = e_j;
  }
  return mine;
}

// Routes token t: scores in shared memory (route_smem: 2 · n_expert floats) by the block, then warp
// 0 picks the k experts and writes them sorted by id (stable: a lane's rank counts the smaller ids
// and the equal ones chosen earlier, the insertion sort's order) with score / Σ scores (summed in
// choice order) · scale. Every thread of the block calls it; it ends with a block barrier.
__device__ void route_token(const RouterParams& p, int64_t t, float* route_smem) {
  float* score = route_smem;                // [n_expert]
  float* biased = route_smem + p.n_expert;  // [n_expert], -inf once chosen
  const float* logits = p.logits + t * p.n_expert;
  for (int e = threadIdx.x; e < p.n_expert; e += blockDim.x) {
    score[e] = sqrtf(softplus_f(logits[e]));
    biased[e] = p.bias ? score[e] + p.bias[e] : score[e];
  }
  __syncthreads();
  if (threadIdx.x < 32) {
    const unsigned full = 0xffffffffu;
    const int lane = threadIdx.x;
    const int mine = route_choose_warp(p, t, biased);
    const float my_score = lane < p.k ? score[mine] : 0.0f;
    float sum = 0.0f;
    for (int j = 0; j < p.k; ++j) sum += __shfl_sync(full, my_score, j);
    const float denom = p.normalize ? fmaxf(sum, 6.103515625e-5f) : 1.0f;
    int rank = 0;
    for (int i = 0; i < p.k; ++i) {
      const int other = __shfl_sync(full, mine, i);
      rank += other < mine || (other == mine && i < lane);
    }
    if (lane < p.k) {
      p.experts[t * p.k + rank] = mine;
      p.weights[t * p.k + rank] = my_score / denom * p.scale;
    }
  }
  __syncthreads();
}

__global__ void route_kernel(RouterParams p) {
  extern __shared__ float route_smem[];
  route_token(p, blockIdx.x, route_smem);
}

// Grouping by one block (ids: p.experts, or route_and_group's shared-memory copy), a stable
// counting sort: warp w owns the contiguous ids [w·seg, (w+1)·seg) and counts them per expert in
// its row of table ([warps][n_expert] ints, shared memory) 32 at a time (lanes with the same id
// found by __match_any_sync, the lowest adds the count); one thread per expert turns its column
// into the warps' start offsets after a block-wide exclusive scan of the totals (which also lists
// the active experts); then each warp walks its ids again and places each at its start + its rank
// among the same id's lower lanes. Each expert's assignments come out in increasing order, as
// with one thread per expert walking all ids (which took ~1 ms for a 2048-token chunk). Ids
// outside [0, n_expert) are not placed.
__device__ void count_by_warp(const MoeGroupParams& p, const int32_t* ids, int* table) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
  const int64_t n = p.n_tokens * p.k, seg = (n + n_warps - 1) / n_warps;
  const int64_t end = min(n, (warp + 1) * seg);
  int* row = table + warp * p.n_expert;
  for (int64_t c = warp * seg; c < end; c += 32) {
    const int e = c + lane < end ? ids[c + lane] : -1;
    const unsigned same = __match_any_sync(0xffffffffu, e);
    if (e >= 0 && e < p.n_expert && lane == __ffs(same) - 1) row[e] += __popc(same);
    __syncwarp();
  }
}

__device__ void place_by_warp(const MoeGroupParams& p, const int32_t* ids, int* table) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n_warps = blockDim.x >> 5;
  const int64_t n = p.n_tokens * p.k, seg = (n + n_warps - 1) / n_warps;
  const int64_t end = min(n, (warp + 1) * seg);
  int* row = table + warp * p.n_expert;
  for (int64_t c = warp * seg; c < end; c += 32) {
    const int64_t a = c + lane;
    const int e = a < end ? ids[a] : -1;
    const unsigned same = __match_any_sync(0xffffffffu, e);
    const bool valid = e >= 0 && e < p.n_expert;
    if (valid) {
      const int at = row[e] + __popc(same & ((1u << lane) - 1u));
      p.token_rows[at] = static_cast<int32_t>(a / p.k);
      p.slot_rows[at] = static_cast<int32_t>(a);
    }
    __syncwarp();
    if (valid && lane == __ffs(same) - 1) row[e] += __popc(same);
    __syncwarp();
  }
}

// table: [blockDim / 32][n_expert] ints of shared memory.
__device__ void group_assignments_scan(const MoeGroupParams& p, const int32_t* ids, int* table) {
  const int n_warps = blockDim.x >> 5;
  for (int i = threadIdx.x; i < n_warps * p.n_expert; i += blockDim.x) table[i] = 0;
  __syncthreads();
  count_by_warp(p, ids, table);
  __syncthreads();
  int run = 0, run_active = 0;
  for (int base = 0; base < p.n_expert; base += blockDim.x) {
    const int e = base + static_cast<int>(threadIdx.x);
    int count = 0;
    if (e < p.n_expert)
      for (int w = 0; w < n_warps; ++w) {  // the column → each warp's offset within the expert
        const int c = table[w * p.n_expert + e];
        table[w * p.n_expert + e] = count;
        count += c;
      }
    int total = 0, total_active = 0;
    const int before = block_exclusive_scan(count, &total);
    const int active_before = block_exclusive_scan(count > 0 ? 1 : 0, &total_active);
    if (e < p.n_expert) {
      const int at = run + before;
      p.offsets[e] = at;
      if (p.active && count > 0) p.active[run_active + active_before] = e;
      for (int w = 0; w < n_warps; ++w) table[w * p.n_expert + e] += at;
    }
    run += total, run_active += total_active;
  }
  if (threadIdx.x == 0) {
    p.offsets[p.n_expert] = run;
    if (p.n_active) *p.n_active = p.active ? run_active : 0;
  }
  __syncthreads();
  place_by_warp(p, ids, table);
}

constexpr int kGroupThreads = 512;  // moe_group's block

constexpr int64_t kFusedGroupMax = 8192;  // assignments route_and_group copies to shared memory

// route_and_group: every block routes its token; the last one to finish copies every expert id
// through L2 (__ldcg: other blocks wrote them; fence before the count) into shared memory, groups
// them and resets the counter (a single block skips the count).
__global__ void moe_group_kernel(MoeGroupParams p) {
  extern __shared__ int group_table[];  // [kGroupThreads / 32][n_expert]
  group_assignments_scan(p, p.experts, group_table);
}

__global__ void route_and_group_kernel(RouterParams r, MoeGroupParams g, int32_t* counter) {
  extern __shared__ float route_smem[];  // [2 · n_expert] floats, [n_tokens · k] ids, the grouping table
  __shared__ bool last;
  route_token(r, blockIdx.x, route_smem);
  if (gridDim.x > 1) {  // one block (one token) is the last without the count
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(counter, 1) == static_cast<int>(gridDim.x) - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
  } else {
    __syncthreads();  // its own id writes, visible to the block
  }
  int32_t* ids = reinterpret_cast<int32_t*>(route_smem + 2 * r.n_expert);
  for (int64_t a = threadIdx.x; a < g.n_tokens * g.k; a += blockDim.x) ids[a] = __ldcg(g.experts + a);
  __syncthreads();
  group_assignments_scan(g, ids, ids + g.n_tokens * g.k);
  if (threadIdx.x == 0 && gridDim.x > 1) *counter = 0;
}

// The element's operands are picked field by field: a reference to either kernel parameter made
// the compiler copy both structs to local memory in every thread (a 112-byte stack frame; the
// kernel ran at ~0.5 TB/s). Indices fit 32 bits (swiglu_pair checks).
__global__ void swiglu_pair_kernel(SwigluParams a, SwigluParams b) {
  const uint32_t id = blockIdx.x * blockDim.x + threadIdx.x;
  const uint32_t n_a = static_cast<uint32_t>(a.n_rows * a.width);
  const bool in_a = id < n_a;
  const uint32_t i = in_a ? id : id - n_a;
  if (!in_a && i >= static_cast<uint32_t>(b.n_rows * b.width)) return;
  const float* gate = in_a ? a.gate : b.gate;
  const float* up = in_a ? a.up : b.up;
  const float* row_weight = in_a ? a.row_weight : b.row_weight;
  const float limit = in_a ? a.limit : b.limit;
  const uint32_t width = static_cast<uint32_t>(in_a ? a.width : b.width);
  const float gv = fminf(gate[i], limit);
  const float u = fminf(fmaxf(up[i], -limit), limit);
  const float w = row_weight ? row_weight[i / width] : 1.0f;
  (in_a ? a.mid : b.mid)[i] = silu_f(gv) * u * w;
}

__global__ void moe_combine_kernel(MoeCombineParams p) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= p.n_tokens * p.n_embd) return;
  const int64_t t = id / p.n_embd, d = id % p.n_embd;
  float y = 0.0f;
  for (int s = 0; s < p.k; ++s) y += p.expert_out[(t * p.k + s) * p.n_embd + d];
  p.y[id] = y + p.shared[id];
}

__global__ void gather_rows_kernel(GatherRowsParams p) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= p.n_rows * p.width) return;
  const int64_t i = id / p.width, c = id % p.width;
  p.out[i * p.out_stride + c] = p.in[static_cast<int64_t>(p.rows[i]) * p.in_stride + c];
}

__global__ void fill_kernel(float* x, int64_t n, float value) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id < n) x[id] = value;
}

}  // namespace

void rms_norm(const RmsNormParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.width > 0 && p.n_rows >= 0 && p.x_stride >= p.width && p.out_stride >= p.width, "cuda::rms_norm",
                     "bad shape");
  if (p.n_rows == 0) return;
  DS4_LAUNCH_REQUIRE(p.x && p.out, "cuda::rms_norm", "null pointer");
  rms_norm_kernel<<<static_cast<unsigned>(p.n_rows), kThreads, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("rms_norm_kernel");
}

void rope_tail(const RopeParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.n_pairs > 0 && 2 * p.n_pairs <= p.width && p.row_stride >= p.width && p.rows_per_token > 0 &&
                         p.n_rows % p.rows_per_token == 0,
                     "cuda::rope_tail", "bad shape");
  if (p.n_rows == 0) return;
  DS4_LAUNCH_REQUIRE(p.x && p.pos && p.freq, "cuda::rope_tail", "null pointer");
  rope_kernel<<<blocks_for(p.n_rows * p.n_pairs), kThreads, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("rope_kernel");
}

void swiglu(const SwigluParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.width > 0 && p.n_rows >= 0 && p.limit > 0, "cuda::swiglu", "bad shape");
  if (p.n_rows == 0) return;
  DS4_LAUNCH_REQUIRE(p.gate && p.up && p.mid, "cuda::swiglu", "null pointer");
  swiglu_kernel<<<blocks_for(p.n_rows * p.width), kThreads, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("swiglu_kernel");
}

void hc_coefficients(const HcCoefParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.hc > 0 && p.hc <= 16 && p.sinkhorn_iters >= 1, "cuda::hc_coefficients", "bad hc shape");
  if (p.n_tokens == 0) return;
  DS4_LAUNCH_REQUIRE(p.mix && p.scale && p.base && p.coef, "cuda::hc_coefficients", "null pointer");
  if (p.hc <= 4) {
    hc_coef_warp_kernel<<<static_cast<unsigned>(p.n_tokens), 32, 0, stream>>>(p);
    DS4_CUDA_LAUNCH_CHECK("hc_coef_warp_kernel");
    return;
  }
  hc_coef_kernel<<<blocks_for(p.n_tokens, 64), 64, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("hc_coef_kernel");
}

void hc_pre(const HcPreParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.hc > 0 && p.hc <= 16 && p.n_embd > 0, "cuda::hc_pre", "bad shape");
  if (p.n_tokens == 0) return;
  hc_pre_kernel<<<blocks_for(p.n_tokens * p.n_embd), kThreads, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("hc_pre_kernel");
}

void hc_post(const HcPostParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.hc > 0 && p.hc <= 16 && p.n_embd > 0 && p.out != p.states, "cuda::hc_post",
                     "bad shape or in-place call");
  if (p.n_tokens == 0) return;
  hc_post_kernel<<<blocks_for(p.n_tokens * p.n_embd), kThreads, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("hc_post_kernel");
}

void hc_collapse(const HcCollapseParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.hc > 0 && p.hc <= 16 && p.n_embd > 0, "cuda::hc_collapse", "bad shape");
  if (p.n_tokens == 0) return;
  hc_collapse_kernel<<<blocks_for(p.n_tokens * p.n_embd), kThreads, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("hc_collapse_kernel");
}

void route(const RouterParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.k > 0 && p.k <= kMaxRouteK && p.k <= p.n_expert, "cuda::route",
                     "k must be in 1.." + std::to_string(kMaxRouteK) + " and <= n_expert");
  DS4_LAUNCH_REQUIRE(!p.hash_table || p.tokens, "cuda::route", "hash routing needs the token ids");
  if (p.n_tokens == 0) return;
  const size_t smem = 2 * sizeof(float) * static_cast<size_t>(p.n_expert);
  DS4_LAUNCH_REQUIRE(smem <= 48 * 1024, "cuda::route", "too many experts for one block");
  route_kernel<<<static_cast<unsigned>(p.n_tokens), kThreads, smem, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("route_kernel");
}

void moe_group(const MoeGroupParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.k > 0 && p.n_expert > 0 && p.n_tokens >= 0, "cuda::moe_group", "bad shape");
  DS4_LAUNCH_REQUIRE(p.offsets && p.token_rows && p.slot_rows && p.experts, "cuda::moe_group", "null pointer");
  const size_t smem = sizeof(int) * (kGroupThreads / 32) * static_cast<size_t>(p.n_expert);
  DS4_LAUNCH_REQUIRE(smem <= 48 * 1024, "cuda::moe_group", "too many experts for the grouping table");
  moe_group_kernel<<<1, kGroupThreads, smem, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("moe_group_kernel");
}

void route_and_group(const RouterParams& r, const MoeGroupParams& g, int32_t* counter, cudaStream_t stream) {
  const char* k = "cuda::route_and_group";
  DS4_LAUNCH_REQUIRE(r.k > 0 && r.k <= kMaxRouteK && r.k <= r.n_expert && g.k == r.k && g.n_expert == r.n_expert &&
                         g.n_tokens == r.n_tokens && g.experts == r.experts,
                     k, "router and grouping disagree on k, n_expert, tokens or the expert buffer");
  DS4_LAUNCH_REQUIRE(!r.hash_table || r.tokens, k, "hash routing needs the token ids");
  DS4_LAUNCH_REQUIRE(counter && g.offsets && g.token_rows && g.slot_rows, k, "null pointer");
  const size_t smem = 2 * sizeof(float) * static_cast<size_t>(r.n_expert) + sizeof(int32_t) * r.n_tokens * r.k +
                      sizeof(int) * (kThreads / 32) * static_cast<size_t>(r.n_expert);
  // Nothing to count, or too many ids for one block: the two launches.
  if (r.n_tokens == 0 || r.n_tokens * r.k > kFusedGroupMax || smem > 48 * 1024) {
    route(r, stream);
    moe_group(g, stream);
    return;
  }
  route_and_group_kernel<<<static_cast<unsigned>(r.n_tokens), kThreads, smem, stream>>>(r, g, counter);
  DS4_CUDA_LAUNCH_CHECK("route_and_group_kernel");
}

void swiglu_pair(const SwigluParams& a, const SwigluParams& b, cudaStream_t stream) {
  for (const SwigluParams* p : {&a, &b})
    DS4_LAUNCH_REQUIRE(p->width > 0 && p->n_rows >= 0 && p->limit > 0 && (p->n_rows == 0 || (p->gate && p->up && p->mid)),
                       "cuda::swiglu_pair", "bad shape or null pointer");
  const int64_t n = a.n_rows * a.width + b.n_rows * b.width;
  DS4_LAUNCH_REQUIRE(n < (int64_t(1) << 31), "cuda::swiglu_pair", "more than 2^31 values");
  if (n == 0) return;
  swiglu_pair_kernel<<<blocks_for(n), kThreads, 0, stream>>>(a, b);
  DS4_CUDA_LAUNCH_CHECK("swiglu_pair_kernel");
}

void moe_combine(const MoeCombineParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.k > 0 && p.n_embd > 0, "cuda::moe_combine", "bad shape");
  if (p.n_tokens == 0) return;
  moe_combine_kernel<<<blocks_for(p.n_tokens * p.n_embd), kThreads, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("moe_combine_kernel");
}

void gather_rows(const GatherRowsParams& p, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(p.width > 0 && p.in_stride >= p.width && p.out_stride >= p.width, "cuda::gather_rows", "bad shape");
  if (p.n_rows == 0) return;
  gather_rows_kernel<<<blocks_for(p.n_rows * p.width), kThreads, 0, stream>>>(p);
  DS4_CUDA_LAUNCH_CHECK("gather_rows_kernel");
}

void fill(float* x, int64_t n, float value, cudaStream_t stream) {
  if (n == 0) return;
  fill_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, n, value);
  DS4_CUDA_LAUNCH_CHECK("fill_kernel");
}

}  // namespace ds4::cuda
