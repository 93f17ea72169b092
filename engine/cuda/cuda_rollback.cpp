// CudaBackend's speculative-decoding support (see cuda_backend.h): before a forward, every
// speculative input's slot (raw-window rings and compressor frontiers of all layers, one contiguous
// range of the pool's slot region) is copied aside on the device with the tokens it is fed.
// rollback(kv, n) copies the slot back, moves the sequence to its old position and re-feeds the
// first n − start tokens: the kernels are deterministic and batch-invariant, so the state is bit for
// bit that of a run that was fed only those tokens. Compressed and indexer rows need nothing: rows
// past n are invisible (their count follows the position) and rewritten when their window closes.
// Costs one slot copy per speculative sequence per step and one batched forward per step for all
// rolled-back sequences (rollback_all).
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_backend_internal.h"

namespace ds4 {
namespace {

[[noreturn]] void rollback_error(const char* what) {
  std::fprintf(stderr, "%s:%d: CudaBackend::rollback: %s\n", __FILE__, __LINE__, what);
  std::abort();
}

}  // namespace

void CudaBackend::save_speculative(const ForwardBatch& batch, const std::vector<SeqRef>& seqs) {
  if (refeeding_) return;  // rollback()'s own forward keeps the records of the verified step
  speculative_.clear();
  for (size_t s = 0; s < seqs.size(); ++s) {
    const SequenceInput& in = batch.sequences[s];
    if (!in.speculative) continue;
    speculative_.push_back({in.kv, seqs[s].slot, in.kv->num_tokens(), std::vector<int32_t>(in.tokens.begin(), in.tokens.end())});
  }
  if (speculative_.empty()) return;
  KvCacheManager& m = kv_->manager();
  const int64_t slot_bytes = m.layout().sizes.slot_bytes;
  const std::byte* slots = m.storage().region(m.layout().slot_region());
  speculative_slots_.grow(static_cast<size_t>(slot_bytes) * speculative_.size());
  for (size_t i = 0; i < speculative_.size(); ++i)
    DS4_CUDA_CHECK(cudaMemcpyAsync(speculative_slots_.as<std::byte>() + i * slot_bytes, slots + speculative_[i].slot * slot_bytes,
                                   static_cast<size_t>(slot_bytes), cudaMemcpyDeviceToDevice, stream_));
}

void CudaBackend::rollback(SequenceKv& kv, int64_t num_tokens) {
  const RollbackTo one{&kv, num_tokens};
  rollback_all(std::span<const RollbackTo>(&one, 1));
}

// Every slot restored first, then one batched forward re-feeds every kept prefix: the kernels are
// batch invariant, so each sequence ends as if re-fed alone.
void CudaBackend::rollback_all(std::span<const RollbackTo> rollbacks) {
  KvCacheManager& m = kv_->manager();
  const int64_t slot_bytes = m.layout().sizes.slot_bytes;
  std::byte* slots = m.storage().region(m.layout().slot_region());
  ForwardBatch refeed;
  refeed.host_logits = false;
  for (const RollbackTo& r : rollbacks) {
    const auto it = std::find_if(speculative_.begin(), speculative_.end(),
                                 [&r](const SpeculativeInput& in) { return in.kv == r.kv; });
    if (it == speculative_.end()) rollback_error("the sequence was not speculative in the last forward");
    const int64_t end = it->start + static_cast<int64_t>(it->tokens.size());
    if (r.num_tokens < it->start || r.num_tokens > end) rollback_error("position outside what the last forward fed");
    if (r.kv->num_tokens() != end) rollback_error("the sequence moved since its speculative forward");
    if (r.num_tokens == end) continue;
    const size_t index = static_cast<size_t>(it - speculative_.begin());
    DS4_CUDA_CHECK(cudaMemcpyAsync(slots + it->slot * slot_bytes, speculative_slots_.as<std::byte>() + index * slot_bytes,
                                   static_cast<size_t>(slot_bytes), cudaMemcpyDeviceToDevice, stream_));
    r.kv->set_num_tokens(it->start);
    if (r.num_tokens > it->start)
      refeed.sequences.push_back({r.kv, std::span<const int32_t>(it->tokens).first(static_cast<size_t>(r.num_tokens - it->start))});
  }
  DS4_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (refeed.sequences.empty()) return;
  refeeding_ = true;
  forward(refeed);
  refeeding_ = false;
}

}  // namespace ds4
