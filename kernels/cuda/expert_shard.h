// Expert-parallel helpers of the MoE sub-layer (docs/PARALLEL.md section 3): restrict a step's
// active-expert list to this rank's range (so the grouped products read only its experts), and
// turn the per-route outputs into one routed sum per token for the all-reduce and back. Each has
// a CPU reference in the test (tests/cuda/cuda_expert_shard_test.cpp); explicit stream.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace ds4::cuda {

// active[0 .. *n_active) (expert ids, increasing) keeps only ids in [first, first + count), in order,
// each minus id_offset (0: global ids; first: ids local to a weight slice); *n_active becomes their
// number. One thread (the list has at most n_expert entries).
void keep_shard_experts(int32_t* active, int32_t* n_active, int first, int count, int id_offset, cudaStream_t stream);

// sum[t] = Σ_s expert_out[t·k + s] in slot order ([n_tokens, n_embd] from [n_tokens · k, n_embd]).
void sum_route_slots(const float* expert_out, int64_t n_tokens, int k, int64_t n_embd, float* sum, cudaStream_t stream);

// expert_out[t·k] = sum[t] and expert_out[t·k + s] = 0 for s >= 1, so a later combine over the
// slots adds the (all-reduced) sum once.
void spread_route_sum(const float* sum, int64_t n_tokens, int k, int64_t n_embd, float* expert_out, cudaStream_t stream);

}  // namespace ds4::cuda
