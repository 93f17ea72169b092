// DraftModel: what speculative decoding asks of a draft model (the MTP module of MODEL.md 3 on a
// backend, or a test fake): per-sequence draft state (the MTP's own raw window), and a ragged batch
// of runs, each a sequence's (previous hidden state, token) inputs at consecutive positions, giving
// the logits and the output hidden state of every run's last input. Which token is paired with
// which state is the caller's choice (scheduler/speculator.h). Called on the engine thread only.
#pragma once
#include <cstdint>
#include <memory>
#include <span>

#include "engine/forward.h"

namespace ds4 {

// One sequence's inputs in a draft call: input j is at position kv->num_tokens() + j.
struct DraftRun {
  SequenceKv* kv = nullptr;             // the draft model's state of the sequence (from new_state())
  std::span<const int32_t> tokens;      // >= 1 tokens
  std::span<const float> prev_states;   // [tokens.size(), state_width()]: the hidden state paired with each token
};

class DraftModel {
 public:
  virtual ~DraftModel() = default;
  // Floats per hidden state (the target's final hyper-connection state: hc_count * n_embd).
  virtual int64_t state_width() const = 0;
  // A state for one sequence; rows at positions up to max_ahead beyond the last true row may be
  // written by recursive drafts without disturbing the rows later inputs read.
  virtual std::unique_ptr<SequenceKv> new_state(int max_ahead) = 0;
  // Empties the state's window: its next input is at position pos and sees nothing before it.
  virtual void restart(SequenceKv& state, int64_t pos) = 0;
  // One logits row (ForwardOutput::row(r)) and one final state per run, for its last input.
  virtual ForwardOutput forward(std::span<const DraftRun> runs) = 0;
};

}  // namespace ds4
