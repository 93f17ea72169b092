// CudaBackend::forward_mtp (see cuda_backend.h): the MTP draft module on the GPU, op for op
// CpuBackend::forward_mtp. Its plan is a one-layer ragged batch (raw window only, a per-run window
// start); its activations live in their own scratch arena, swapped in for the call, so the main
// step's captured graphs keep pointing at valid buffers. The block's sub-layers are the main
// layers' code (cuda_layers.cpp) over the MTP's weights and ring (LayerRef).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/cuda_backend_internal.h"
#include "engine/cuda/cuda_step.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/ops.h"

namespace ds4 {
namespace {

[[noreturn]] void invalid_mtp(const std::string& what) {
  std::fprintf(stderr, "%s:%d: CudaBackend::forward_mtp: %s\n", __FILE__, __LINE__, what.c_str());
  std::abort();
}

// The fused hc kernels read F16/F32 mixing weights, 16-byte aligned rows.
bool fused_hc_weights(const DeviceLayerWeights& w) {
  auto ok = [](const DeviceTensor& t) {
    return (t.type == GgmlType::F16 || t.type == GgmlType::F32) && reinterpret_cast<uintptr_t>(t.data) % 16 == 0 &&
           t.row_bytes % 16 == 0;
  };
  return ok(w.hc_attn_fn) && ok(w.hc_ffn_fn);
}

}  // namespace

ForwardOutput CudaBackend::forward_mtp(const DeviceMtpWeights& mtp, const cuda::LayerKv& kv, std::span<const DraftRun> runs,
                                       std::span<const MtpSlot> slots) {
  const ModelConfig& c = config_;
  const int64_t n = c.n_embd, hc = c.hc_count, hw = hc * n;
  if (runs.empty() || slots.size() != runs.size()) invalid_mtp("no runs, or not one slot per run");
  // The MTP's scratch and step switches for the call (restored below; errors abort).
  StepState& st = *step_;
  const bool fused_main = st.fused_ops, pad_main = st.pad_plan;
  std::swap(scratch_, mtp_scratch_);
  st.fused_ops = fused_main && fused_hc_weights(mtp.block);
  st.pad_plan = false;
  Scratch& s = *scratch_;

  // Plan: tokens by run, positions from each state's count, one logit row (the last input) per run.
  std::vector<int32_t> tok, pos, seq, first, count, start, slot, window, rows;
  std::vector<float> prev;
  for (size_t r = 0; r < runs.size(); ++r) {
    const DraftRun& run = runs[r];
    const int64_t len = static_cast<int64_t>(run.tokens.size());
    if (!run.kv || len < 1 || static_cast<int64_t>(run.prev_states.size()) != len * hw)
      invalid_mtp("bad run (no state, no tokens, or prev_states not [tokens, hc_count * n_embd])");
    const int64_t at = run.kv->num_tokens();
    if (at < slots[r].window_start || at + len > INT32_MAX) invalid_mtp("run position before its window start or past 2^31");
    first.push_back(static_cast<int32_t>(tok.size()));
    count.push_back(static_cast<int32_t>(len));
    start.push_back(static_cast<int32_t>(at));
    slot.push_back(slots[r].slot);
    window.push_back(static_cast<int32_t>(slots[r].window_start));
    for (int64_t j = 0; j < len; ++j) {
      if (run.tokens[j] < 0 || run.tokens[j] >= c.n_vocab) invalid_mtp("token id " + std::to_string(run.tokens[j]) + " out of range");
      tok.push_back(run.tokens[j]);
      pos.push_back(static_cast<int32_t>(at + j));
      seq.push_back(static_cast<int32_t>(r));
    }
    rows.push_back(static_cast<int32_t>(tok.size()) - 1);
    prev.insert(prev.end(), run.prev_states.begin(), run.prev_states.end());
  }
  Plan plan;
  plan.n_tokens = static_cast<int64_t>(tok.size());
  plan.n_seqs = static_cast<int>(runs.size());
  plan.n_logit_rows = static_cast<int64_t>(rows.size());
  std::vector<int32_t> bcast(static_cast<size_t>(plan.n_tokens * hc));  // stream row -> its token's row
  for (size_t i = 0; i < bcast.size(); ++i) bcast[i] = static_cast<int32_t>(i / hc);
  std::vector<int32_t> table(runs.size(), 0);  // raw window only: no compressed rows to address

  std::vector<int32_t>& h = s.plan_host;
  h.clear();
  auto push = [&h](const std::vector<int32_t>& v) {
    const size_t at = h.size();
    h.insert(h.end(), v.begin(), v.end());
    return at;
  };
  const size_t o_tok = push(tok), o_pos = push(pos), o_seq = push(seq), o_first = push(first), o_count = push(count);
  const size_t o_start = push(start), o_slot = push(slot), o_table = push(table), o_window = push(window);
  const size_t o_rows = push(rows), o_bcast = push(bcast);
  s.plan.grow(h.size() * sizeof(int32_t));
  DS4_CUDA_CHECK(cudaMemcpyAsync(s.plan.get(), h.data(), h.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  const int32_t* d = s.plan.as<int32_t>();
  cuda::StepBatch& b = plan.batch;
  b.n_tokens = plan.n_tokens, b.n_seqs = plan.n_seqs, b.max_blocks = 1;
  b.token_pos = d + o_pos, b.token_seq = d + o_seq, b.seq_first = d + o_first, b.seq_count = d + o_count;
  b.seq_start = d + o_start, b.seq_slot = d + o_slot, b.block_table = d + o_table, b.seq_window_start = d + o_window;
  plan.tokens = d + o_tok, plan.logit_rows = d + o_rows;
  plan.first_row.resize(runs.size()), plan.n_rows.assign(runs.size(), 1);
  for (size_t r = 0; r < runs.size(); ++r) plan.first_row[r] = static_cast<int64_t>(r);
  size_scratch(plan);
  prepare_step_buffers(plan);
  const int64_t T = plan.n_tokens;

  // H0[t, s] = e_proj · enorm(embed(token)) + h_proj · hnorm(prev state stream s).
  DS4_CUDA_CHECK(cudaMemcpyAsync(s.states, prev.data(), prev.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
  cuda::rms_norm({s.states, n, s.flat, n, mtp.hnorm.f32(), T * hc, n, c.rms_eps}, stream_);
  matmul_rows(mtp.h_proj, s.flat, n, s.states_next, n, T * hc);
  const DeviceTensor& e = weights_dev_.token_embd;
  cuda::DequantRowsParams ep;
  ep.w = e.data, ep.type = e.type, ep.n_in = static_cast<int64_t>(e.ne0), ep.row_bytes = e.row_bytes;
  ep.rows = plan.tokens, ep.n_rows = T, ep.out = s.x, ep.out_stride = n, ep.copies = 1;
  cuda::dequant_rows(ep, stream_);
  cuda::rms_norm({s.x, n, s.x, n, mtp.enorm.f32(), T, n, c.rms_eps}, stream_);
  matmul_rows(mtp.e_proj, s.x, n, s.y, n, T);
  cuda::gather_rows({s.y, n, d + o_bcast, s.flat, n, T * hc, n}, stream_);
  cuda::moe_combine({s.states_next, s.flat, s.states, T * hc, n, 1}, stream_);

  const LayerRef block{&mtp.block, kv, -1, 0, false, c.swiglu_clamp.back()};
  attention_layer(plan, block);
  s.n_active = s.n_active_layers;
  moe_layer(plan, block);
  hc_flush(T);
  head_logits(plan, mtp.hc_head_fn, mtp.hc_head_scale, mtp.hc_head_base, mtp.norm);

  ForwardOutput out;
  out.n_vocab = c.n_vocab;
  out.first_row = plan.first_row, out.n_rows = plan.n_rows;
  out.logits.resize(static_cast<size_t>(plan.n_logit_rows * c.n_vocab));
  out.final_states.resize(static_cast<size_t>(plan.n_logit_rows * hw));
  DS4_CUDA_CHECK(cudaMemcpyAsync(out.logits.data(), s.logits, out.logits.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
  DS4_CUDA_CHECK(cudaMemcpyAsync(out.final_states.data(), s.head_states, out.final_states.size() * sizeof(float),
                                 cudaMemcpyDeviceToHost, stream_));
  DS4_CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::swap(scratch_, mtp_scratch_);
  st.fused_ops = fused_main, st.pad_plan = pad_main;
  for (size_t r = 0; r < runs.size(); ++r) runs[r].kv->set_num_tokens(runs[r].kv->num_tokens() + count[r]);
  return out;
}

}  // namespace ds4
