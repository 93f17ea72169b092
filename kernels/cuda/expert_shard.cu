// Expert-parallel helper kernels (see expert_shard.h).
#include "kernels/cuda/expert_shard.h"

#include "kernels/cuda/cuda_check.h"

namespace ds4::cuda {
namespace {

constexpr int kThreads = 256;
unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

__global__ void keep_shard_experts_kernel(int32_t* active, int32_t* n_active, int first, int count, int id_offset) {
  int kept = 0;
  for (int i = 0; i < *n_active; ++i)
    if (active[i] >= first && active[i] < first + count) active[kept++] = active[i] - id_offset;
  *n_active = kept;
}

__global__ void sum_route_slots_kernel(const float* out, int64_t n_tokens, int k, int64_t n_embd, float* sum) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= n_tokens * n_embd) return;
  const int64_t t = id / n_embd, d = id % n_embd;
  float y = 0.0f;
  for (int s = 0; s < k; ++s) y += out[(t * k + s) * n_embd + d];
  sum[id] = y;
}

__global__ void spread_route_sum_kernel(const float* sum, int64_t n_tokens, int k, int64_t n_embd, float* out) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= n_tokens * n_embd) return;
  const int64_t t = id / n_embd, d = id % n_embd;
  out[(t * k) * n_embd + d] = sum[id];
  for (int s = 1; s < k; ++s) out[(t * k + s) * n_embd + d] = 0.0f;
}

}  // namespace

void keep_shard_experts(int32_t* active, int32_t* n_active, int first, int count, int id_offset, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(active && n_active && first >= 0 && count > 0 && id_offset >= 0 && id_offset <= first,
                     "cuda::keep_shard_experts", "bad range");
  keep_shard_experts_kernel<<<1, 1, 0, stream>>>(active, n_active, first, count, id_offset);
  DS4_CUDA_LAUNCH_CHECK("keep_shard_experts_kernel");
}

void sum_route_slots(const float* expert_out, int64_t n_tokens, int k, int64_t n_embd, float* sum, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(k > 0 && n_embd > 0 && n_tokens >= 0, "cuda::sum_route_slots", "bad shape");
  if (n_tokens == 0) return;
  sum_route_slots_kernel<<<blocks_for(n_tokens * n_embd), kThreads, 0, stream>>>(expert_out, n_tokens, k, n_embd, sum);
  DS4_CUDA_LAUNCH_CHECK("sum_route_slots_kernel");
}

void spread_route_sum(const float* sum, int64_t n_tokens, int k, int64_t n_embd, float* expert_out, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(k > 0 && n_embd > 0 && n_tokens >= 0, "cuda::spread_route_sum", "bad shape");
  if (n_tokens == 0) return;
  spread_route_sum_kernel<<<blocks_for(n_tokens * n_embd), kThreads, 0, stream>>>(sum, n_tokens, k, n_embd, expert_out);
  DS4_CUDA_LAUNCH_CHECK("spread_route_sum_kernel");
}

}  // namespace ds4::cuda
