// CudaBackend: the forward pass of engine/forward.h on one GPU, op for op the CPU reference
// (engine/cpu_backend.h) with every op a kernel of kernels/cuda: weights as stored in the GGUF
// (DeviceWeights), KV state in the kvcache/ paged pool on the device (CudaKvPool: an own one whose
// sequences come from new_sequence(), or the scheduler's KvCacheManager),
// ragged batches of sequences at different positions, routed experts grouped so each selected
// expert's weights are read once per call. Results do not depend on what else is in the batch.
// Owned and called by one thread (the engine thread); each forward() synchronises its stream.
// Speculative inputs: forward() keeps a device copy of each one's slot (raw-window rings and
// compressor frontiers) and its fed tokens, and the compressors log every frontier entry they
// overwrite; rollback_all() puts back the rejected positions' raw rows and frontier entries
// (engine/cuda/cuda_rollback.cpp; without a log, e.g. after a graph-replayed step, it restores the
// slots and re-feeds the kept prefixes in one batch), so each state equals a run that never saw
// the rest. forward_mtp() runs the MTP draft module (engine/cuda/cuda_mtp.h).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "engine/cuda/cuda_kv.h"
#include "engine/cuda/cuda_step.h"
#include "engine/cuda/cuda_weights.h"
#include "engine/expert_parallel.h"
#include "engine/draft_model.h"
#include "engine/forward.h"
#include "engine/model_config.h"
#include "engine/weights.h"
#include "kernels/cuda/copy_spans.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/sample.h"

namespace ds4 {

struct CudaBackendOptions {
  ForwardOptions forward;
  int device = 0;
  int max_seqs = 64;            // KV slots (sequences alive at once)
  int64_t kv_blocks = 0;        // KV blocks of 256 positions in total; 0: max_seqs × 16 (4096 tokens each)
  // The scheduler's paged pool (kvcache/ over make_cuda_kv_storage, f32 rows) instead of an own
  // one; then batches carry its sequence_kv() views and max_seqs / kv_blocks are unused.
  KvCacheManager* kv_manager = nullptr;
  DeviceWeights::Progress progress;  // weight upload progress (optional)
  // Step fast paths (engine/cuda/cuda_step.h), on by default since they passed the whole-model GPU
  // tests on the H200 (docs/PERFORMANCE.md "CUDA step: fused ops and graphs");
  // $DS4_CUDA_STEP = plain | fused | graphs overrides them.
  bool fused_ops = true;    // fused small-op kernels (kernels/cuda/fused_ops.h) where the model allows
  bool cuda_graphs = true;  // decode steps (one token per sequence) captured once per shape, then replayed
  // Expert parallelism (docs/PARALLEL.md): this rank computes only its routed experts and the
  // routed sums are all-reduced on the backend's stream after the down product (main layers only;
  // the MTP block is never sharded). Inactive by default. The weights still hold every expert.
  // With data_parallel the rank runs only its own sequences (possibly none): per MoE layer the
  // ranks' normalised rows are all-gathered, every rank's routes to this rank's experts computed,
  // and the routed sums reduce-scattered back (batches carry ForwardBatch::rank_tokens).
  ExpertParallel expert_parallel;
};

class CudaBackend final : public Backend {
 public:
  // config must outlive the backend; the host weights are only read here (uploaded as stored).
  // Throws LoadError when no CUDA device is usable or the weights do not fit.
  CudaBackend(const ModelConfig& config, const Weights& weights, CudaBackendOptions options = {});
  // Over weights already on options.device (DeviceWeights::upload or ::synthesize).
  CudaBackend(const ModelConfig& config, DeviceWeights weights, CudaBackendOptions options = {});
  // Makes options.device current; throws LoadError when no CUDA device is usable.
  static void select_device(int device);
  ~CudaBackend() override;
  // Every sequence of the batch must come from this backend's new_sequence() or be a view of
  // options.kv_manager.
  ForwardOutput forward(const ForwardBatch& batch) override;
  // KV state for a new sequence of the own pool, or null when every slot is in use.
  std::unique_ptr<CudaSequenceKv> new_sequence();

  // Samples one token per logit row of the last forward() on the GPU (kernels/cuda/sample.h):
  // rows[i] for logit row i, in ForwardOutput order; the same tokens as engine/sampler.h up to
  // the sampler's stated tolerance. rows.size() must equal the last forward's logit rows.
  std::vector<int32_t> sample(std::span<const cuda::SampleRow> rows);
  // Speculative decoding (see the file comment): exact; restores from the undo log, or re-feeds.
  bool supports_rollback() const override { return true; }
  void rollback(SequenceKv& kv, int64_t num_tokens) override;
  void rollback_all(std::span<const RollbackTo> rollbacks) override;
  // Sequences rolled back so far from the undo log, and by re-feeding (graph-replayed steps).
  struct RollbackCounts {
    int64_t undone = 0, refed = 0;
  };
  const RollbackCounts& rollback_counts() const { return rollback_counts_; }
  // Backend's device sampling: sample() with the rows' parameters.
  bool supports_device_sampling() const override { return true; }
  std::vector<int32_t> sample_rows(std::span<const RowSampling> rows) override;

  // The MTP draft module (MODEL.md 3; engine/cuda/cuda_mtp.h drives it): per run, embedding +
  // enorm and the per-stream hnorm of the paired states, e_proj / h_proj, the block's raw-window
  // attention and MoE with their hyper-connections over `kv` (slot and window start per run), and
  // the MTP's hc head + norm over the shared output head; op for op CpuBackend::forward_mtp. One
  // logits row and one output state per run (host copies); each run's kv advances by its tokens.
  // Launched op by op (never graph-captured); keeps the main step's graphs valid.
  struct MtpSlot {
    int32_t slot = 0;          // ring slot in kv
    int64_t window_start = 0;  // first position with a raw row
  };
  ForwardOutput forward_mtp(const DeviceMtpWeights& mtp, const cuda::LayerKv& kv, std::span<const DraftRun> runs,
                            std::span<const MtpSlot> slots);

  // A batch sequence resolved to its place in the pool.
  struct SeqRef {
    SequenceKv* kv = nullptr;
    int64_t slot = 0;
    std::span<const int32_t> blocks;
  };

  // Switches the step's fast paths (fused ops where supported, CUDA graphs); drops cached graphs.
  void set_step_modes(bool fused_ops, bool cuda_graphs);
  const StepGraphStats& step_stats() const { return step_->stats; }

  uint64_t weight_bytes() const { return weights_dev_.bytes(); }
  uint64_t kv_bytes() const { return kv_->bytes(); }

 private:
  // A speculative input of the last forward(): where its slot was saved and what it was fed.
  struct SpeculativeInput {
    SequenceKv* kv = nullptr;
    int64_t slot = 0;
    int64_t start = 0;             // its position before the forward
    std::vector<int32_t> tokens;   // fed tokens
    int undo_index = -1;           // its part of the undo log (undo_), or -1: roll back by re-feeding
  };
  // The compressors' undo log of the last forward's speculative inputs (cuda::CompressorParams::undo):
  // per (layer, compressor) a region at offset[il · 2 + indexer] floats. Not kept for graph-replayed
  // steps (their launches are fixed); rollback then re-feeds.
  struct SpeculativeUndo {
    bool active = false;
    int tokens = 0;                     // undo_tokens
    std::vector<int64_t> offset;        // [n_layer · 2], -1: no such compressor
    std::vector<int32_t> seq_map_host;  // [batch sequences]: undo index or -1
    cuda::DeviceBuffer log, seq_map, spans;
  };
  void save_speculative(const ForwardBatch& batch, const std::vector<SeqRef>& seqs);
  void plan_undo(const ForwardBatch& batch);
  // Restores of one sequence rolled back from the undo log: raw rows of the rejected positions from
  // the slot copy, frontier entries from the log (the oldest rejected token's saved value wins).
  void undo_spans(const SpeculativeInput& in, int64_t num_tokens, std::vector<cuda::CopySpan>& spans) const;
  struct Plan;
  struct PlanOffsets;
  struct Scratch;
  Plan build_plan_host(const ForwardBatch& batch, const std::vector<SeqRef>& seqs, PlanOffsets& off);
  Plan build_plan(const ForwardBatch& batch, const std::vector<SeqRef>& seqs);
  void size_scratch(const Plan& plan);
  // y[t] = W · x[t] for t < n_tokens (a plain, ungrouped product).
  void matmul_rows(const DeviceTensor& w, const float* x, int64_t x_stride, float* y, int64_t y_stride, int64_t n_tokens);
  // matmul_rows(a, x, ya) and matmul_rows(b, x, yb) in one launch where they can share it (same
  // format and width: cuda::matmul_pair); bit-identical to the two calls.
  void matmul_rows_pair(const DeviceTensor& a, float* ya, int64_t ya_stride, const DeviceTensor& b, float* yb,
                        int64_t yb_stride, const float* x, int64_t x_stride, int64_t n_tokens);
  void embed(const Plan& plan);
  void hc_begin(const DeviceTensor& fn, const DeviceTensor& scale, const DeviceTensor& base, int64_t n_tokens);
  void hc_end(int64_t n_tokens);
  void hc_fused(const DeviceTensor* fn, const DeviceTensor* scale, const DeviceTensor* base, const DeviceTensor* norm,
                int64_t n_tokens);
  void hc_flush(int64_t n_tokens);
  // Graph replay of the step when its shape was captured before (true: nothing left to launch);
  // else starts a capture when the step is replayable (step_end finishes it).
  bool step_begin(const Plan& plan);
  void prepare_step_buffers(const Plan& plan);  // the fused kernels' buffers; no sub-layer post-mix pending
  void step_end();
  bool graph_step(const ForwardBatch& batch) const;
  void apply_step_env();
  // The head over the rows plan.logit_rows of the states: hc collapse (fn, scale, base), norm, output.
  void head_logits(const Plan& plan, const DeviceTensor& hc_fn, const DeviceTensor& hc_scale, const DeviceTensor& hc_base,
                   const DeviceTensor& norm);
  // What a block's sub-layers read: its weights and KV, compress ratio, hash routing, SwiGLU clamp
  // (a main layer il, or the MTP block with its own raw-window KV and il = -1).
  struct LayerRef {
    const DeviceLayerWeights* w = nullptr;
    cuda::LayerKv kv;
    int il = -1;  // main-model layer (compressor frontiers, indexer); -1: none
    int ratio = 0;
    bool hash = false;
    float swiglu_clamp = 0.0f;
  };
  LayerRef main_layer(int il) const;
  void attention_layer(const Plan& plan, const LayerRef& layer);
  void moe_layer(const Plan& plan, const LayerRef& layer);
  void attention_sublayer(const Plan& plan, const LayerRef& layer);
  void moe_sublayer(const Plan& plan, const LayerRef& layer);
  // Data-parallel attention (engine/cuda/cuda_data_parallel.cpp).
  bool data_parallel() const { return options_.expert_parallel.active() && options_.expert_parallel.data_parallel; }
  // Throws std::invalid_argument when the batch's rank_tokens do not fit this rank and batch.
  void check_rank_tokens(const ForwardBatch& batch) const;
  // plan.rank_rows / moe_rows from the batch (n_tokens when not data-parallel).
  void plan_moe_rows(Plan& plan, const ForwardBatch& batch) const;
  // Every rank's token ids into Scratch::dp_tokens (once per step, before the layers).
  void gather_step_tokens(const Plan& plan);
  // Every rank's normalised rows of this MoE layer into Scratch::dp_x; returns dp_x.
  const float* gather_moe_rows(const Plan& plan);
  // A step of a rank without sequences: only the MoE layers' exchanges and this rank's experts
  // for the other ranks' tokens; no logits.
  ForwardOutput forward_idle(const ForwardBatch& batch);
  // Copies the per-layer expert counts, waits for the stream (through the communicator under
  // expert parallelism) and fills out's read counters (dense weights and embedding rows when `dense`).
  void finish_counters(const Plan& plan, bool dense, ForwardOutput& out);
  void compressed_rows(const Plan& plan, int il, bool indexer);
  void indexer_select(const Plan& plan, int il);
  // Logits (and, with host_logits, their copy to the host) and the read counters into out.
  void head(const Plan& plan, bool host_logits, ForwardOutput& out);

  const ModelConfig& config_;
  CudaBackendOptions options_;
  cudaStream_t stream_ = nullptr;
  DeviceWeights weights_dev_;
  std::unique_ptr<CudaKvPool> kv_;
  std::vector<SpeculativeInput> speculative_;  // of the last forward() (not of rollback's re-feeds)
  cuda::DeviceBuffer speculative_slots_;       // [speculative_.size(), slot bytes]
  bool refeeding_ = false;                     // inside rollback()'s forward()
  SpeculativeUndo undo_;
  RollbackCounts rollback_counts_;
  cuda::DeviceBuffer rope_freq_;  // [2, rope_dim / 2] f64: plain, compressed
  std::unique_ptr<Scratch> scratch_;
  std::unique_ptr<Scratch> mtp_scratch_;  // forward_mtp's own (swapped in): the step graphs' pointers stay valid
  std::unique_ptr<StepState> step_;   // fast-path switches, fused-kernel buffers, graph cache
  bool capturing_ = false;
  int64_t last_logit_rows_ = 0;          // logit rows of the last forward (in scratch_->logits)
  cuda::DeviceBuffer sample_workspace_;  // sampler scratch and tokens
  int64_t dense_weight_bytes_ = 0;       // weights every pass reads whole (all but experts and embedding)
  std::vector<int32_t> n_active_host_;   // [n_layer] distinct routed experts of the last forward
};

}  // namespace ds4
