// CudaBackend's speculative-decoding support (see cuda_backend.h): before a forward, every
// speculative input's slot (raw-window rings and compressor frontiers of all layers, one contiguous
// range of the pool's slot region) is copied aside on the device with the tokens it is fed, and the
// compressors log every frontier entry a speculative token overwrites (cuda::CompressorParams::undo).
// rollback_all() then puts back, per rolled-back sequence, the raw rows of its rejected positions
// (from the slot copy: a rejected position's ring row held an older position's row) and the
// frontier entries its rejected tokens changed (from the log, the oldest rejected token's saved
// value), in one copy launch: the state is bit for bit that of a run fed only the kept tokens. Rows
// of kept positions were computed from the kept prefix alone (causal), so they stay. Without a log
// (a graph-replayed step) it copies the slot back and re-feeds the kept prefixes in one batched
// forward (deterministic, batch-invariant kernels). Compressed and indexer rows need nothing: rows
// past n are invisible (their count follows the position) and rewritten when their window closes.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>

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
  plan_undo(batch);
  if (speculative_.empty()) return;
  KvCacheManager& m = kv_->manager();
  const int64_t slot_bytes = m.layout().sizes.slot_bytes;
  const std::byte* slots = m.storage().region(m.layout().slot_region());
  speculative_slots_.grow(static_cast<size_t>(slot_bytes) * speculative_.size());
  for (size_t i = 0; i < speculative_.size(); ++i)
    DS4_CUDA_CHECK(cudaMemcpyAsync(speculative_slots_.as<std::byte>() + i * slot_bytes, slots + speculative_[i].slot * slot_bytes,
                                   static_cast<size_t>(slot_bytes), cudaMemcpyDeviceToDevice, stream_));
}

// The undo log's layout for this batch (or none: no speculative input, or a graph-replayed step).
void CudaBackend::plan_undo(const ForwardBatch& batch) {
  const ModelConfig& c = config_;
  undo_.active = !speculative_.empty() && !graph_step(batch);
  if (!undo_.active) return;
  undo_.seq_map_host.assign(batch.sequences.size(), -1);
  int n_spec = 0;
  undo_.tokens = 1;
  for (size_t s = 0; s < batch.sequences.size(); ++s) {
    if (!batch.sequences[s].speculative) continue;
    undo_.seq_map_host[s] = n_spec++;
    undo_.tokens = std::max(undo_.tokens, static_cast<int>(batch.sequences[s].tokens.size()));
  }
  for (size_t i = 0; i < speculative_.size(); ++i) speculative_[i].undo_index = static_cast<int>(i);  // same order
  undo_.offset.assign(static_cast<size_t>(c.n_layer) * 2, -1);
  int64_t total = 0;
  for (int il = 0; il < c.n_layer; ++il) {
    const int ratio = c.compress_ratio(il);
    if (ratio == 0) continue;
    for (int indexer = 0; indexer < (ratio == 4 ? 2 : 1); ++indexer) {
      undo_.offset[il * 2 + indexer] = total;
      total += int64_t(n_spec) * undo_.tokens * cuda::kUndoEntries * 2 * (indexer ? c.indexer_dim : c.head_dim);
    }
  }
  undo_.log.grow(static_cast<size_t>(std::max<int64_t>(total, 1)) * sizeof(float));
  undo_.seq_map.grow(undo_.seq_map_host.size() * sizeof(int32_t));
  DS4_CUDA_CHECK(cudaMemcpyAsync(undo_.seq_map.get(), undo_.seq_map_host.data(), undo_.seq_map_host.size() * sizeof(int32_t),
                                 cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::undo_spans(const SpeculativeInput& in, int64_t num_tokens, std::vector<cuda::CopySpan>& spans) const {
  const ModelConfig& c = config_;
  KvCacheManager& m = kv_->manager();
  const int64_t slot_bytes = m.layout().sizes.slot_bytes;
  std::byte* slots = m.storage().region(m.layout().slot_region());
  std::byte* saved = speculative_slots_.as<std::byte>() + static_cast<int64_t>(in.undo_index) * slot_bytes;
  const int64_t count = static_cast<int64_t>(in.tokens.size()), kept = num_tokens - in.start;
  for (int il = 0; il < c.n_layer; ++il) {  // raw rows of the rejected positions, from the slot copy
    const cuda::LayerKv kv = kv_->layer(il);
    const int64_t layer_at = reinterpret_cast<std::byte*>(kv.raw) - slots;
    for (int64_t p = num_tokens; p < in.start + count; ++p) {
      const int64_t at = layer_at + (p % kv.raw_ring_rows) * kv.head_dim * int64_t(sizeof(float));
      spans.push_back({reinterpret_cast<float*>(slots + in.slot * slot_bytes + at), reinterpret_cast<const float*>(saved + at),
                       kv.head_dim});
    }
  }
  std::map<float*, const float*> entries;  // frontier entry -> its saved value; older tokens overwrite newer
  for (int il = 0; il < c.n_layer; ++il) {
    const int R = c.compress_ratio(il);
    for (int indexer = 0; R > 0 && indexer < (R == 4 ? 2 : 1); ++indexer) {
      const int D = indexer ? c.indexer_dim : c.head_dim, W = frontier_width(R, D);
      const int64_t slot_at = in.slot * kv_->frontier_slot_stride();
      float* fkv = kv_->frontier(il, indexer, false) + slot_at;
      float* fsc = kv_->frontier(il, indexer, true) + slot_at;
      const float* log = undo_.log.as<float>() + undo_.offset[il * 2 + indexer];
      for (int64_t i = count - 1; i >= kept; --i) {
        const int64_t pos = in.start + i;
        auto entry = [&](int e, int row, int half) {
          const float* at = log + ((int64_t(in.undo_index) * undo_.tokens + i) * cuda::kUndoEntries + e) * 2 * D;
          entries[fkv + row * W + half * D] = at;
          entries[fsc + row * W + half * D] = at + D;
        };
        const int phi = static_cast<int>(pos % R);
        for (int half = 0; half < (R == 4 ? 2 : 1); ++half) entry(half, R == 4 ? 4 + phi : phi, half);
        if (R == 4 && (pos + 1) % R == 0)
          for (int r = 0; r < 4; ++r)
            for (int half = 0; half < 2; ++half) entry(2 + 2 * r + half, r, half);
      }
      for (const auto& [dst, src] : entries) spans.push_back({dst, src, D});
      entries.clear();
    }
  }
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
  std::vector<cuda::CopySpan> spans;
  std::vector<const RollbackTo*> undone;
  for (const RollbackTo& r : rollbacks) {
    const auto it = std::find_if(speculative_.begin(), speculative_.end(),
                                 [&r](const SpeculativeInput& in) { return in.kv == r.kv; });
    if (it == speculative_.end()) rollback_error("the sequence was not speculative in the last forward");
    const int64_t end = it->start + static_cast<int64_t>(it->tokens.size());
    if (r.num_tokens < it->start || r.num_tokens > end) rollback_error("position outside what the last forward fed");
    if (r.kv->num_tokens() != end) rollback_error("the sequence moved since its speculative forward");
    if (r.num_tokens == end) continue;
    if (undo_.active && it->undo_index >= 0) {
      undo_spans(*it, r.num_tokens, spans);
      undone.push_back(&r);
      ++rollback_counts_.undone;
      continue;
    }
    const size_t index = static_cast<size_t>(it - speculative_.begin());
    DS4_CUDA_CHECK(cudaMemcpyAsync(slots + it->slot * slot_bytes, speculative_slots_.as<std::byte>() + index * slot_bytes,
                                   static_cast<size_t>(slot_bytes), cudaMemcpyDeviceToDevice, stream_));
    r.kv->set_num_tokens(it->start);
    ++rollback_counts_.refed;
    if (r.num_tokens > it->start)
      refeed.sequences.push_back({r.kv, std::span<const int32_t>(it->tokens).first(static_cast<size_t>(r.num_tokens - it->start))});
  }
  if (!spans.empty()) {
    undo_.spans.grow(spans.size() * sizeof(cuda::CopySpan));
    DS4_CUDA_CHECK(cudaMemcpyAsync(undo_.spans.get(), spans.data(), spans.size() * sizeof(cuda::CopySpan),
                                   cudaMemcpyHostToDevice, stream_));
    cuda::copy_spans(undo_.spans.as<cuda::CopySpan>(), static_cast<int64_t>(spans.size()), stream_);
  }
  DS4_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (const RollbackTo* r : undone) r->kv->set_num_tokens(r->num_tokens);
  if (refeed.sequences.empty()) return;
  refeeding_ = true;
  forward(refeed);
  refeeding_ = false;
}

}  // namespace ds4
