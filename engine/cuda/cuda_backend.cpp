// CudaBackend orchestration: device set-up, batch validation, the per-step plan and scratch
// arena, embedding, the layer loop and the head (see cuda_backend.h; the sub-layers are in
// cuda_layers.cpp).
#include "engine/cuda/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "engine/cuda/cuda_backend_internal.h"
#include "engine/load_error.h"
#include "engine/rope.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/ops.h"

namespace ds4 {
namespace {

[[noreturn]] void invalid_batch(const std::string& what) {
  std::fprintf(stderr, "%s:%d: CudaBackend::forward: %s\n", __FILE__, __LINE__, what.c_str());
  std::abort();
}

std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1ull << 30));
  return buf;
}

// Carves aligned regions out of one allocation: add() records each request, assign() sets them.
class ArenaLayout {
 public:
  template <typename T>
  void add(T*& ptr, int64_t count) {
    slots_.push_back({reinterpret_cast<void**>(&ptr), total_});
    total_ += (static_cast<uint64_t>(std::max<int64_t>(count, 1)) * sizeof(T) + 255) / 256 * 256;
  }
  uint64_t total() const { return total_; }
  void assign(void* base) const {
    for (const Slot& s : slots_) *s.ptr = static_cast<uint8_t*>(base) + s.offset;
  }

 private:
  struct Slot {
    void** ptr;
    uint64_t offset;
  };
  std::vector<Slot> slots_;
  uint64_t total_ = 0;
};

}  // namespace

const RatioPlan& CudaBackend::Plan::for_ratio(int ratio) const {
  for (const RatioPlan& r : ratios)
    if (r.ratio == ratio) return r;
  invalid_batch("no plan for compress ratio " + std::to_string(ratio));
}

void CudaBackend::select_device(int device) {
  int n_devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&n_devices);
  if (err != cudaSuccess || n_devices == 0)
    throw LoadError(std::string("CudaBackend: no CUDA device (") + (err != cudaSuccess ? cudaGetErrorString(err) : "none found") + ")");
  if (device < 0 || device >= n_devices)
    throw LoadError("CudaBackend: device " + std::to_string(device) + " does not exist");
  DS4_CUDA_CHECK(cudaSetDevice(device));
}

namespace {

DeviceWeights upload_checked(const Weights& weights, const CudaBackendOptions& options) {
  CudaBackend::select_device(options.device);
  size_t free_bytes = 0, total_bytes = 0;
  DS4_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const uint64_t need = DeviceWeights::required_bytes(weights);
  if (need > free_bytes)
    throw LoadError("CudaBackend: the weights need " + gib(need) + " but the device has " + gib(free_bytes) + " free");
  return DeviceWeights::upload(weights, options.progress);
}

// Bytes of every weight a pass reads whole: all but the routed experts (read per distinct expert)
// and the embedding (one row per token); the same sum as the CPU backend's.
int64_t dense_weight_bytes(const DeviceWeights& w) {
  static constexpr DeviceTensor DeviceLayerWeights::*kDense[] = {
      &DeviceLayerWeights::hc_attn_fn, &DeviceLayerWeights::hc_attn_scale, &DeviceLayerWeights::hc_attn_base,
      &DeviceLayerWeights::attn_norm, &DeviceLayerWeights::attn_q_a, &DeviceLayerWeights::attn_q_a_norm,
      &DeviceLayerWeights::attn_q_b, &DeviceLayerWeights::attn_kv, &DeviceLayerWeights::attn_kv_a_norm,
      &DeviceLayerWeights::attn_sinks, &DeviceLayerWeights::attn_output_a, &DeviceLayerWeights::attn_output_b,
      &DeviceLayerWeights::attn_compressor_ape, &DeviceLayerWeights::attn_compressor_kv,
      &DeviceLayerWeights::attn_compressor_gate, &DeviceLayerWeights::attn_compressor_norm,
      &DeviceLayerWeights::indexer_attn_q_b, &DeviceLayerWeights::indexer_proj,
      &DeviceLayerWeights::indexer_compressor_ape, &DeviceLayerWeights::indexer_compressor_kv,
      &DeviceLayerWeights::indexer_compressor_gate, &DeviceLayerWeights::indexer_compressor_norm,
      &DeviceLayerWeights::hc_ffn_fn, &DeviceLayerWeights::hc_ffn_scale, &DeviceLayerWeights::hc_ffn_base,
      &DeviceLayerWeights::ffn_norm, &DeviceLayerWeights::ffn_gate_inp, &DeviceLayerWeights::exp_probs_b,
      &DeviceLayerWeights::ffn_gate_shexp, &DeviceLayerWeights::ffn_up_shexp, &DeviceLayerWeights::ffn_down_shexp};
  auto bytes = [](const DeviceTensor& t) { return t.present() ? static_cast<int64_t>(t.bytes()) : int64_t{0}; };
  int64_t total = bytes(w.output) + bytes(w.output_norm) + bytes(w.output_hc_fn) + bytes(w.output_hc_base) +
                  bytes(w.output_hc_scale);
  for (const DeviceLayerWeights& lw : w.layers)
    for (auto member : kDense) total += bytes(lw.*member);
  return total;
}

}  // namespace

CudaBackend::CudaBackend(const ModelConfig& config, const Weights& weights, CudaBackendOptions options)
    : CudaBackend(config,
                  upload_checked(options.expert_parallel.active() ? expert_slice(weights, options.expert_parallel.shard) : weights,
                                 options),
                  options) {}

CudaBackend::CudaBackend(const ModelConfig& config, DeviceWeights weights, CudaBackendOptions options)
    : config_(config), options_(std::move(options)), weights_dev_(std::move(weights)) {
  select_device(options_.device);
  DS4_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  const int64_t blocks = options_.kv_blocks > 0 ? options_.kv_blocks : int64_t(options_.max_seqs) * 16;
  kv_ = options_.kv_manager ? std::make_unique<CudaKvPool>(config_, *options_.kv_manager)
                            : std::make_unique<CudaKvPool>(config_, options_.max_seqs, blocks);
  std::vector<double> freq;
  for (bool compressed : {false, true}) {
    const RopeFrequencies f = rope_frequencies(config_, compressed);
    freq.insert(freq.end(), f.freq.begin(), f.freq.end());
  }
  rope_freq_.grow(freq.size() * sizeof(double));
  DS4_CUDA_CHECK(cudaMemcpy(rope_freq_.get(), freq.data(), freq.size() * sizeof(double), cudaMemcpyHostToDevice));
  scratch_ = std::make_unique<Scratch>();
  mtp_scratch_ = std::make_unique<Scratch>();
  step_ = std::make_unique<StepState>();
  step_->route_counter.grow(sizeof(int32_t));
  DS4_CUDA_CHECK(cudaMemset(step_->route_counter.get(), 0, sizeof(int32_t)));
  set_step_modes(options_.fused_ops, options_.cuda_graphs);
  apply_step_env();
  dense_weight_bytes_ = dense_weight_bytes(weights_dev_);
  const ExpertParallel& ep = options_.expert_parallel;
  if (ep.active() && (ep.shard.first < 0 || ep.shard.count < 1 || ep.shard.first + ep.shard.count > config_.n_expert))
    throw LoadError("expert parallelism: experts [" + std::to_string(ep.shard.first) + ", " +
                    std::to_string(ep.shard.first + ep.shard.count) + ") are not a range of the model's " +
                    std::to_string(config_.n_expert) + " experts");
  for (const DeviceLayerWeights& l : weights_dev_.layers) {  // all experts, or exactly this rank's slice
    const uint64_t held = l.ffn_gate_exps.ne2;
    if (held != uint64_t(config_.n_expert) && !(ep.active() && held == uint64_t(ep.shard.count)))
      throw LoadError("CudaBackend: the weights hold " + std::to_string(held) + " routed experts per layer, not the model's " +
                      std::to_string(config_.n_expert) + (ep.active() ? " or this rank's " + std::to_string(ep.shard.count) : std::string()));
  }
}

CudaBackend::~CudaBackend() {
  if (stream_) cudaStreamDestroy(stream_);
}

std::unique_ptr<CudaSequenceKv> CudaBackend::new_sequence() {
  return kv_->new_sequence();
}

namespace {

// The batch's sequences with their slots and block tables, after validation and reservation.
std::vector<CudaBackend::SeqRef> validate_batch(const ModelConfig& c, const ForwardBatch& batch, const CudaKvPool& pool) {
  std::vector<CudaBackend::SeqRef> seqs;
  std::set<const SequenceKv*> seen;
  if (batch.sequences.empty()) invalid_batch("empty batch");
  for (const SequenceInput& in : batch.sequences) {
    CudaBackend::SeqRef ref;
    ref.kv = in.kv;
    if (!in.kv || !pool.address(*in.kv, ref.slot, ref.blocks))
      invalid_batch("sequence KV state is neither from new_sequence() nor from the backend's KV manager");
    if (!seen.insert(in.kv).second) invalid_batch("the same sequence appears twice in one batch");
    if (in.tokens.empty()) invalid_batch("sequence without tokens");
    for (int32_t t : in.tokens)
      if (t < 0 || t >= c.n_vocab) invalid_batch("token id " + std::to_string(t) + " out of range");
    const int64_t end = in.kv->num_tokens() + static_cast<int64_t>(in.tokens.size());
    if (end > INT32_MAX) invalid_batch("position beyond 2^31");
    if (!in.kv->reserve(end)) invalid_batch("KV pool out of blocks");
    pool.address(*in.kv, ref.slot, ref.blocks);  // the table may have grown
    seqs.push_back(ref);
  }
  return seqs;
}

}  // namespace

// Host side of the plan: every index array, appended to one int32 vector (offsets recorded).
CudaBackend::Plan CudaBackend::build_plan_host(const ForwardBatch& batch, const std::vector<SeqRef>& seqs,
                                              PlanOffsets& off) {
  const ModelConfig& c = config_;
  std::vector<int32_t>& h = scratch_->plan_host;
  h.clear();
  Plan plan;
  plan.n_seqs = static_cast<int>(seqs.size());
  std::vector<int32_t> tok, pos, seq, first, count, start, slot;
  int max_blocks = 1;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const SequenceInput& in = batch.sequences[s];
    first.push_back(static_cast<int32_t>(tok.size()));
    count.push_back(static_cast<int32_t>(in.tokens.size()));
    start.push_back(static_cast<int32_t>(seqs[s].kv->num_tokens()));
    slot.push_back(static_cast<int32_t>(seqs[s].slot));
    max_blocks = std::max<int>(max_blocks, static_cast<int>(seqs[s].blocks.size()));
    for (size_t i = 0; i < in.tokens.size(); ++i) {
      tok.push_back(in.tokens[i]);
      pos.push_back(start.back() + static_cast<int32_t>(i));
      seq.push_back(static_cast<int32_t>(s));
    }
  }
  plan.n_tokens = static_cast<int64_t>(tok.size());
  if (step_->pad_plan) max_blocks = (max_blocks + 7) / 8 * 8;  // bucketed table stride (graph key)
  std::vector<int32_t> table(seqs.size() * max_blocks, 0);
  for (size_t s = 0; s < seqs.size(); ++s) std::copy(seqs[s].blocks.begin(), seqs[s].blocks.end(), table.begin() + s * max_blocks);
  auto push = [&h](const std::vector<int32_t>& v) {
    const size_t at = h.size();
    h.insert(h.end(), v.begin(), v.end());
    return at;
  };
  off.tok = push(tok), off.pos = push(pos), off.seq = push(seq), off.first = push(first), off.count = push(count);
  off.start = push(start), off.slot = push(slot), off.table = push(table);
  plan.batch.max_blocks = max_blocks;

  // Compressed-row emissions per distinct ratio.
  std::set<int> ratios;
  for (int il = 0; il < c.n_layer; ++il)
    if (c.compress_ratio(il) > 0) ratios.insert(c.compress_ratio(il));
  for (int r : ratios) {
    RatioPlan rp;
    rp.ratio = r;
    std::vector<int32_t> index(tok.size(), -1), eseq, erow, epos;
    for (size_t t = 0; t < tok.size(); ++t) {
      const int64_t p = pos[t], n_visible = (p + 1) / r;
      rp.max_comp_rows = std::max<int64_t>(rp.max_comp_rows, r == 4 ? std::min<int64_t>(n_visible, c.indexer_top_k) : n_visible);
      if ((p + 1) % r != 0) continue;
      index[t] = static_cast<int32_t>(eseq.size());
      eseq.push_back(seq[t]);
      erow.push_back(static_cast<int32_t>((p + 1) / r - 1));
      epos.push_back(static_cast<int32_t>(p + 1 - r));
    }
    rp.n_emit = static_cast<int64_t>(eseq.size());
    plan.max_emit = std::max(plan.max_emit, rp.n_emit);
    if (step_->pad_plan) {  // fixed-size emission lists and a bucketed row bound (graph key)
      eseq.resize(tok.size()), erow.resize(tok.size()), epos.resize(tok.size());
      plan.max_emit = static_cast<int64_t>(tok.size());
      rp.max_comp_rows = (rp.max_comp_rows + 255) / 256 * 256;
    }
    off.ratio.push_back({push(index), push(eseq), push(erow), push(epos)});
    plan.ratios.push_back(rp);
  }

  // Indexer queries: tokens whose visible ratio-4 rows exceed top_k.
  std::vector<int32_t> sel_of(tok.size(), -1), sel;
  for (size_t t = 0; t < tok.size(); ++t) {
    const int64_t n_visible = (static_cast<int64_t>(pos[t]) + 1) / 4;
    if (n_visible <= c.indexer_top_k) continue;
    sel_of[t] = static_cast<int32_t>(sel.size());
    sel.push_back(static_cast<int32_t>(t));
    plan.max_sel_rows = std::max(plan.max_sel_rows, n_visible);
  }
  if (step_->pad_plan && !sel.empty()) {  // a fixed-size query list (padding -1), bucketed rows
    sel.resize(tok.size(), -1);
    plan.max_sel_rows = (plan.max_sel_rows + 511) / 512 * 512;
  }
  plan.n_sel = static_cast<int64_t>(sel.size());
  off.sel = push(sel), off.sel_of = push(sel_of);

  // Logit rows.
  std::vector<int32_t> rows;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const SequenceInput& in = batch.sequences[s];
    plan.first_row.push_back(static_cast<int64_t>(rows.size()));
    for (int32_t i = in.all_logits ? 0 : count[s] - 1; i < count[s]; ++i) rows.push_back(first[s] + i);
    plan.n_rows.push_back(static_cast<int64_t>(rows.size()) - plan.first_row.back());
  }
  plan.n_logit_rows = static_cast<int64_t>(rows.size());
  off.rows = push(rows);
  return plan;
}

CudaBackend::Plan CudaBackend::build_plan(const ForwardBatch& batch, const std::vector<SeqRef>& seqs) {
  PlanOffsets off;
  Plan plan = build_plan_host(batch, seqs, off);
  const std::vector<int32_t>& h = scratch_->plan_host;
  scratch_->plan.grow(h.size() * sizeof(int32_t));
  DS4_CUDA_CHECK(cudaMemcpyAsync(scratch_->plan.get(), h.data(), h.size() * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
  const int32_t* d = scratch_->plan.as<int32_t>();
  cuda::StepBatch& b = plan.batch;
  b.n_tokens = plan.n_tokens;
  b.n_seqs = plan.n_seqs;
  plan.tokens = d + off.tok;
  b.token_pos = d + off.pos, b.token_seq = d + off.seq, b.seq_first = d + off.first, b.seq_count = d + off.count;
  b.seq_start = d + off.start, b.seq_slot = d + off.slot, b.block_table = d + off.table;
  for (size_t i = 0; i < plan.ratios.size(); ++i) {
    RatioPlan& rp = plan.ratios[i];
    rp.emit_index = d + off.ratio[i][0], rp.emit_seq = d + off.ratio[i][1];
    rp.emit_row = d + off.ratio[i][2], rp.emit_pos = d + off.ratio[i][3];
  }
  plan.sel_tokens = d + off.sel, plan.sel_of_token = d + off.sel_of;
  plan.logit_rows = d + off.rows;
  // The host vector is read by the async copy: keep it unchanged until the step synchronises.
  return plan;
}

void CudaBackend::size_scratch(const Plan& plan) {
  const ModelConfig& c = config_;
  Scratch& s = *scratch_;
  const int64_t T = plan.n_tokens, n = c.n_embd, hw = int64_t(c.hc_count) * n, mixd = c.hc_mix_dim();
  // Routed-expert rows: plan.moe_rows under data-parallel attention, else the step's tokens.
  const int64_t k = c.n_expert_used, M = std::max(plan.moe_rows, T), tk = M * k, R = plan.n_logit_rows;
  const DeviceLayerWeights& l0 = weights_dev_.layers.at(0);
  const int64_t ffn = static_cast<int64_t>(l0.ffn_gate_exps.ne1), ffn_sh = static_cast<int64_t>(l0.ffn_gate_shexp.ne1);
  const int64_t n_expert = static_cast<int64_t>(l0.ffn_gate_inp.ne1);  // the router's outputs (expert weights may be a slice)
  ArenaLayout a;
  a.add(s.states, T * hw), a.add(s.states_next, T * hw), a.add(s.flat, T * hw);
  a.add(s.mix, T * mixd), a.add(s.coef, T * mixd);
  a.add(s.x, T * n), a.add(s.normed, T * n), a.add(s.y, T * n);
  a.add(s.q_lora, T * c.q_lora_rank), a.add(s.q, T * c.q_dim()), a.add(s.kv, T * c.head_dim), a.add(s.rawq, T * c.head_dim);
  a.add(s.heads, T * c.q_dim()), a.add(s.low, T * int64_t(c.o_groups) * c.o_lora_rank);
  a.add(s.comp_kv, T * 2 * c.head_dim), a.add(s.comp_gate, T * 2 * c.head_dim), a.add(s.pooled, plan.max_emit * c.head_dim);
  a.add(s.idx_kv, T * 2 * c.indexer_dim), a.add(s.idx_gate, T * 2 * c.indexer_dim);
  a.add(s.idx_pooled, plan.max_emit * c.indexer_dim), a.add(s.idx_q, T * int64_t(c.indexer_heads) * c.indexer_dim);
  a.add(s.idx_w, T * c.indexer_heads), a.add(s.idx_scores, plan.n_sel * plan.max_sel_rows);
  a.add(s.idx_selected, plan.n_sel * c.indexer_top_k);
  a.add(s.router_logits, M * n_expert), a.add(s.route_weights, tk), a.add(s.experts, tk);
  a.add(s.group_offsets, n_expert + 1), a.add(s.token_rows, tk), a.add(s.slot_rows, tk);
  a.add(s.active_experts, n_expert), a.add(s.n_active_layers, c.n_layer);
  a.add(s.ffn_gate, tk * ffn), a.add(s.ffn_up, tk * ffn), a.add(s.ffn_mid, tk * ffn), a.add(s.expert_out, tk * n);
  if (expert_x_planes(M))
    a.add(s.x_planes, std::max(M * cuda::x_plane_row_bytes(n), tk * cuda::x_plane_row_bytes(ffn)));
  a.add(s.sh_gate, T * ffn_sh), a.add(s.sh_up, T * ffn_sh), a.add(s.sh_mid, T * ffn_sh), a.add(s.sh_out, T * n);
  if (options_.expert_parallel.active()) a.add(s.ep_sum, M * n);
  if (data_parallel()) {
    const int64_t B = plan.rank_rows;
    a.add(s.dp_send, B * n), a.add(s.dp_x, M * n), a.add(s.dp_own, B * n);
    a.add(s.dp_token_send, B), a.add(s.dp_tokens, M);
  }
  a.add(s.head_states, R * hw), a.add(s.head_flat, R * hw), a.add(s.head_mix, R * c.hc_count);
  a.add(s.head_h, R * n), a.add(s.logits, R * c.n_vocab);
  s.arena.grow(a.total());
  a.assign(s.arena.get());
}

ForwardOutput CudaBackend::forward(const ForwardBatch& batch) {
  if (data_parallel()) {
    check_rank_tokens(batch);
    if (batch.sequences.empty()) return forward_idle(batch);
  }
  const std::vector<SeqRef> seqs = validate_batch(config_, batch, *kv_);
  save_speculative(batch, seqs);
  step_->pad_plan = graph_step(batch);
  Plan plan = build_plan(batch, seqs);
  plan_moe_rows(plan, batch);
  size_scratch(plan);
  const bool replayed = step_begin(plan);
  const bool captured = capturing_;
  if (!replayed) {
    embed(plan);
    if (data_parallel()) gather_step_tokens(plan);
    for (int il = 0; il < config_.n_layer; ++il) {
      const LayerRef layer = main_layer(il);
      attention_layer(plan, layer);
      scratch_->n_active = scratch_->n_active_layers + il;  // kept per layer for the read counters
      moe_layer(plan, layer);
    }
    hc_flush(plan.n_tokens);
    const DeviceWeights& w = weights_dev_;
    head_logits(plan, w.output_hc_fn, w.output_hc_scale, w.output_hc_base, w.output_norm);
    step_end();
  }
  ForwardOutput out;
  out.launch = replayed ? StepLaunch::kGraphReplay : captured ? StepLaunch::kGraphCapture : StepLaunch::kDirect;
  head(plan, batch.host_logits, out);
  last_logit_rows_ = plan.n_logit_rows;
  for (size_t s = 0; s < seqs.size(); ++s)
    seqs[s].kv->set_num_tokens(seqs[s].kv->num_tokens() + static_cast<int64_t>(batch.sequences[s].tokens.size()));
  return out;
}

std::vector<int32_t> CudaBackend::sample_rows(std::span<const RowSampling> rows) {
  std::vector<cuda::SampleRow> device_rows(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const SamplingParams& p = rows[i].params;
    device_rows[i] = cuda::SampleRow{p.temperature, p.top_p, p.min_p, p.top_k, p.seed, rows[i].step};
  }
  return sample(device_rows);
}

std::vector<int32_t> CudaBackend::sample(std::span<const cuda::SampleRow> rows) {
  const int64_t R = static_cast<int64_t>(rows.size());
  if (R != last_logit_rows_)
    invalid_batch("sample: " + std::to_string(R) + " rows for " + std::to_string(last_logit_rows_) + " logit rows");
  std::vector<int32_t> tokens(rows.size());
  if (R == 0) return tokens;
  const size_t ws = cuda::sample_workspace_bytes(R, config_.n_vocab);
  const size_t tokens_at = (ws + 255) / 256 * 256;
  sample_workspace_.grow(tokens_at + sizeof(int32_t) * rows.size());
  int32_t* tokens_dev = reinterpret_cast<int32_t*>(sample_workspace_.as<uint8_t>() + tokens_at);
  cuda::SampleParams p;
  p.logits = scratch_->logits, p.logits_stride = config_.n_vocab, p.n_rows = R, p.n_vocab = config_.n_vocab;
  p.rows = rows.data(), p.tokens = tokens_dev, p.workspace = sample_workspace_.get(), p.workspace_bytes = ws;
  cuda::sample(p, stream_);
  DS4_CUDA_CHECK(cudaMemcpyAsync(tokens.data(), tokens_dev, sizeof(int32_t) * rows.size(), cudaMemcpyDeviceToHost, stream_));
  DS4_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return tokens;
}

void CudaBackend::embed(const Plan& plan) {
  const DeviceTensor& e = weights_dev_.token_embd;
  cuda::DequantRowsParams p;
  p.w = e.data, p.type = e.type, p.n_in = static_cast<int64_t>(e.ne0), p.row_bytes = e.row_bytes;
  p.rows = plan.tokens, p.n_rows = plan.n_tokens;
  p.out = scratch_->states, p.out_stride = int64_t(config_.hc_count) * config_.n_embd, p.copies = config_.hc_count;
  cuda::dequant_rows(p, stream_);
}

void CudaBackend::head(const Plan& plan, bool host_logits, ForwardOutput& out) {
  const ModelConfig& c = config_;
  Scratch& s = *scratch_;
  const int64_t R = plan.n_logit_rows, hw = int64_t(c.hc_count) * c.n_embd;  // logits computed by head_logits
  out.n_vocab = c.n_vocab;
  out.first_row = plan.first_row;
  out.n_rows = plan.n_rows;
  if (host_logits) {
    out.logits.resize(static_cast<size_t>(R * c.n_vocab));
    out.final_states.resize(static_cast<size_t>(R * hw));
    DS4_CUDA_CHECK(cudaMemcpyAsync(out.logits.data(), s.logits, out.logits.size() * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    DS4_CUDA_CHECK(cudaMemcpyAsync(out.final_states.data(), s.head_states, out.final_states.size() * sizeof(float),
                                   cudaMemcpyDeviceToHost, stream_));
  }
  finish_counters(plan, true, out);
}

void CudaBackend::finish_counters(const Plan& plan, bool dense, ForwardOutput& out) {
  const ModelConfig& c = config_;
  const DeviceWeights& w = weights_dev_;
  n_active_host_.resize(static_cast<size_t>(c.n_layer));
  DS4_CUDA_CHECK(cudaMemcpyAsync(n_active_host_.data(), scratch_->n_active_layers, n_active_host_.size() * sizeof(int32_t),
                                 cudaMemcpyDeviceToHost, stream_));
  // Under expert parallelism the step holds collectives: wait through the communicator, which
  // throws (instead of blocking forever) when a peer rank failed.
  if (options_.expert_parallel.active()) options_.expert_parallel.comm->wait(stream_);
  DS4_CUDA_CHECK(cudaStreamSynchronize(stream_));
  // What the pass read: dense weights once, each layer's distinct experts once, one embedding row per token.
  if (dense) out.weight_bytes_read = dense_weight_bytes_ + plan.n_tokens * static_cast<int64_t>(w.token_embd.row_bytes);
  for (int il = 0; il < c.n_layer; ++il) {
    const DeviceLayerWeights& lw = w.layers[il];
    const int64_t expert_bytes = static_cast<int64_t>(lw.ffn_gate_exps.matrix_bytes() + lw.ffn_up_exps.matrix_bytes() +
                                                      lw.ffn_down_exps.matrix_bytes());
    out.unique_experts += n_active_host_[il];
    out.weight_bytes_read += n_active_host_[il] * expert_bytes;
  }
}

namespace {
cuda::MatmulParams rows_params(const DeviceTensor& w, const float* x, int64_t x_stride, float* y, int64_t y_stride,
                               int64_t n_tokens) {
  cuda::MatmulParams p;
  p.w = w.data, p.type = w.type, p.n_in = static_cast<int64_t>(w.ne0), p.n_out = static_cast<int64_t>(w.n_rows());
  p.row_bytes = w.row_bytes, p.x = x, p.x_stride = x_stride, p.y = y, p.y_stride = y_stride, p.n_tokens = n_tokens;
  return p;
}
}  // namespace

void CudaBackend::matmul_rows(const DeviceTensor& w, const float* x, int64_t x_stride, float* y, int64_t y_stride,
                              int64_t n_tokens) {
  cuda::matmul(rows_params(w, x, x_stride, y, y_stride, n_tokens), stream_);
}

void CudaBackend::matmul_rows_pair(const DeviceTensor& a, float* ya, int64_t ya_stride, const DeviceTensor& b, float* yb,
                                   int64_t yb_stride, const float* x, int64_t x_stride, int64_t n_tokens) {
  cuda::matmul_pair(rows_params(a, x, x_stride, ya, ya_stride, n_tokens), rows_params(b, x, x_stride, yb, yb_stride, n_tokens),
                    stream_);
}

}  // namespace ds4
