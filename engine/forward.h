// The forward-pass API every backend implements: one call evaluates a ragged batch (each
// sequence with its own new tokens at its own positions, reading and updating its own KV state)
// and returns logits. Built fresh each step by the engine loop; the CPU backend is the reference.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "engine/kv_state.h"

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
};

struct ForwardBatch {
  std::vector<SequenceInput> sequences;
};

struct ForwardOutput {
  int64_t n_vocab = 0;
  std::vector<float> logits;       // [n_rows, n_vocab]
  std::vector<int64_t> first_row;  // per sequence: its first row in logits
  std::vector<int64_t> n_rows;     // per sequence: how many rows it has
  std::vector<float> final_states; // [n_rows, hc_count * n_embd]: final hyper-connection state (MTP input)
  const float* row(size_t seq, int64_t i = 0) const { return logits.data() + (first_row[seq] + i) * n_vocab; }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual ForwardOutput forward(const ForwardBatch& batch) = 0;
};

}  // namespace ds4
