// CudaBackend under data-parallel attention (docs/PARALLEL.md sections 3 and 5): each rank runs the
// attention, shared expert and head of its own sequences only; the routed experts of an MoE layer
// run over every rank's tokens. Per step the ranks' token ids are all-gathered once; per MoE layer
// the normalised rows are all-gathered (each rank's block padded to the busiest rank's count, the
// sizes known from ForwardBatch::rank_tokens, so no count exchange and no host round trip: the
// step stays capturable), every rank computes the routes to its own experts, and the per-token
// routed sums are reduce-scattered back to the rank the token came from. This is the replicated
// mode's expert path over gathered rows: the same arithmetic per route and a sum over ranks, so
// the same tolerance. Padding rows are zero (their routes add zeros and are never read back). A
// rank without sequences in a step still joins every layer's exchanges (forward_idle).
#include <algorithm>
#include <stdexcept>
#include <string>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_backend_internal.h"
#include "kernels/cuda/cuda_check.h"

namespace ds4 {

void CudaBackend::check_rank_tokens(const ForwardBatch& batch) const {
  const ExpertParallel& ep = options_.expert_parallel;
  const std::vector<int64_t>& counts = batch.rank_tokens;
  int64_t own = 0;
  for (const SequenceInput& in : batch.sequences) own += static_cast<int64_t>(in.tokens.size());
  if (counts.size() != static_cast<size_t>(ep.comm->world()))
    throw std::invalid_argument("data-parallel attention: the batch must carry every rank's token count (" +
                                std::to_string(counts.size()) + " given for " + std::to_string(ep.comm->world()) + " ranks)");
  if (counts[static_cast<size_t>(ep.comm->rank())] != own)
    throw std::invalid_argument("data-parallel attention: this rank's count is " +
                                std::to_string(counts[static_cast<size_t>(ep.comm->rank())]) + ", its batch has " +
                                std::to_string(own) + " tokens");
  if (*std::min_element(counts.begin(), counts.end()) < 0 || *std::max_element(counts.begin(), counts.end()) < 1)
    throw std::invalid_argument("data-parallel attention: token counts must be >= 0 with at least one token in the step");
}

void CudaBackend::plan_moe_rows(Plan& plan, const ForwardBatch& batch) const {
  if (!data_parallel()) {
    plan.rank_rows = plan.moe_rows = plan.n_tokens;
    return;
  }
  plan.rank_rows = *std::max_element(batch.rank_tokens.begin(), batch.rank_tokens.end());
  plan.moe_rows = plan.rank_rows * static_cast<int64_t>(batch.rank_tokens.size());
}

namespace {

// The own `own_bytes` at `own` into `send`, zero up to `block_bytes`, then every rank's block into
// `recv` (device memory, enqueued on `stream`).
void gather_padded(Communicator& comm, const void* own, size_t own_bytes, size_t block_bytes, void* send, void* recv,
                   cudaStream_t stream) {
  if (own_bytes > 0) DS4_CUDA_CHECK(cudaMemcpyAsync(send, own, own_bytes, cudaMemcpyDeviceToDevice, stream));
  if (block_bytes > own_bytes)
    DS4_CUDA_CHECK(cudaMemsetAsync(static_cast<char*>(send) + own_bytes, 0, block_bytes - own_bytes, stream));
  comm.all_gather(send, recv, block_bytes, stream);
}

}  // namespace

void CudaBackend::gather_step_tokens(const Plan& plan) {
  Scratch& s = *scratch_;
  gather_padded(*options_.expert_parallel.comm, plan.tokens, size_t(plan.n_tokens) * sizeof(int32_t),
                size_t(plan.rank_rows) * sizeof(int32_t), s.dp_token_send, s.dp_tokens, stream_);
}

const float* CudaBackend::gather_moe_rows(const Plan& plan) {
  Scratch& s = *scratch_;
  const size_t row_bytes = size_t(config_.n_embd) * sizeof(float);
  gather_padded(*options_.expert_parallel.comm, s.normed, size_t(plan.n_tokens) * row_bytes, size_t(plan.rank_rows) * row_bytes,
                s.dp_send, s.dp_x, stream_);
  return s.dp_x;
}

// No sequence of this rank in the step: every MoE layer's exchanges, this rank's experts over the
// other ranks' rows, launched op by op (never captured); no attention, no head, no logits.
ForwardOutput CudaBackend::forward_idle(const ForwardBatch& batch) {
  Plan plan;
  plan_moe_rows(plan, batch);
  size_scratch(plan);
  prepare_step_buffers(plan);
  gather_step_tokens(plan);
  for (int il = 0; il < config_.n_layer; ++il) {
    scratch_->n_active = scratch_->n_active_layers + il;  // kept per layer for the read counters
    moe_sublayer(plan, main_layer(il));
  }
  ForwardOutput out;
  out.n_vocab = config_.n_vocab;
  last_logit_rows_ = 0;
  save_speculative(batch, {});  // nothing of the last step left to roll back
  finish_counters(plan, false, out);  // only this rank's experts were read
  return out;
}

}  // namespace ds4
