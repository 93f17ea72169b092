// The forward-pass API every backend implements: one call evaluates a ragged batch (each
// sequence with its own new tokens at its own positions, reading and updating its own KV state)
// and returns logits. Built fresh each step by the engine loop; the CPU backend is the reference.
// Speculative decoding: a sequence fed as `speculative` can afterwards be rolled back to any
// position inside what it was fed (rollback()), exactly, until the backend's next forward().
// Device sampling: a backend that keeps logits on an accelerator can draw the tokens there
// (sample_rows()); the engine then asks forward() not to copy logits to the host (host_logits).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "engine/kv_state.h"
#include "engine/sampler.h"

namespace ds4 {

struct ForwardOptions {
  // The model's in-graph quantisation (MODEL.md 2.6): FP8 on raw and compressed KV rows (+ f16
  // rounding of raw rows) and Hadamard + FP4 on indexer vectors. On for the real model; off to
  // compare with HF transformers, which does not apply them.
  bool quantize_kv = true;
};

struct SequenceInput {
  SequenceKv* kv = nullptr;          // the new tokens start at position kv->num_tokens()
  std::span<const int32_t> tokens;   // at least one token
  bool all_logits = false;           // logits for every new token (else only for the last)
  bool speculative = false;          // the tail may be rolled back (the backend keeps an undo log)
};

struct ForwardBatch {
  std::vector<SequenceInput> sequences;
  // false: the caller samples with Backend::sample_rows() and reads no logits or final states, so
  // a device backend may leave them on the device (ForwardOutput::logits / final_states empty;
  // first_row / n_rows still filled). Backends without device sampling ignore it.
  bool host_logits = true;
  // Data-parallel attention (engine/expert_parallel.h): every rank's token count this step in rank
  // order, the own entry equal to this batch's (the step message tells every rank; the GPU backend
  // sizes its exchanges by it, so it needs no count exchange). Empty otherwise; the CPU backend
  // exchanges its counts instead and ignores it.
  std::vector<int64_t> rank_tokens;
};

// How to draw the token of one logit row (engine/sampler.h): the request's parameters and the
// draw counter (its number of generated tokens).
struct RowSampling {
  SamplingParams params;
  uint64_t step = 0;
};

// How a backend ran a forward pass's kernels (metrics): launched one by one (every CPU pass, and
// GPU steps that are not captured), replayed as a cached CUDA graph, or captured into a new graph
// (which costs the capture and instantiation on top of the step).
enum class StepLaunch : uint8_t { kDirect, kGraphReplay, kGraphCapture };

struct ForwardOutput {
  int64_t n_vocab = 0;
  std::vector<float> logits;       // [n_rows, n_vocab]
  std::vector<int64_t> first_row;  // per sequence: its first row in logits
  std::vector<int64_t> n_rows;     // per sequence: how many rows it has
  std::vector<float> final_states; // [n_rows, hc_count * n_embd]: final hyper-connection state (MTP input)
  // What the pass read (for metrics): routed experts summed over layers (each counted once per
  // pass however many tokens used it) and weight bytes (dense weights once, each distinct expert
  // once, one embedding row per token). 0 when a backend does not report them.
  int64_t unique_experts = 0;
  int64_t weight_bytes_read = 0;
  StepLaunch launch = StepLaunch::kDirect;
  const float* row(size_t seq, int64_t i = 0) const { return logits.data() + (first_row[seq] + i) * n_vocab; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual ForwardOutput forward(const ForwardBatch& batch) = 0;
  // True when rollback() is implemented (speculative decoding needs it).
  virtual bool supports_rollback() const { return false; }
  // After the last forward() fed `kv` as speculative: returns kv to exactly the state it had after
  // num_tokens positions, for num_tokens between that input's start and end (raw window rows and
  // compressor frontiers restored, later compressed rows invisible, kv->num_tokens() == num_tokens).
  // Calling it for a sequence that was not speculative in the last forward() is a programmer error.
  virtual void rollback(SequenceKv& kv, int64_t num_tokens);
  // rollback() of several sequences of the last forward() at once (a backend may batch the work;
  // default: one rollback() each, in order).
  struct RollbackTo {
    SequenceKv* kv = nullptr;
    int64_t num_tokens = 0;
  };
  virtual void rollback_all(std::span<const RollbackTo> rollbacks);
  // True when sample_rows() is implemented.
  virtual bool supports_device_sampling() const { return false; }
  // One token per logit row of the last forward() (rows in ForwardOutput order; rows.size() must
  // equal its total row count), drawn as sample_token(row, params, step) would draw it, up to the
  // backend's stated tolerance. Calling it on a backend without device sampling is a programmer error.
  virtual std::vector<int32_t> sample_rows(std::span<const RowSampling> rows);
};

}  // namespace ds4
