// The model-facing half of one engine step, as free functions so the Engine and the scheduler
// tests run the same code: turn a ScheduledBatch into the backend's ragged ForwardBatch, and sample
// each finished chunk's next token with the request's own counter-based RNG.
#pragma once
#include <vector>

#include "engine/forward.h"
#include "scheduler/kv_pool.h"
#include "scheduler/scheduler.h"

namespace ds4 {

// One SequenceInput per entry: tokens [start, start + num_tokens) over the pool's state of the
// sequence, which must be at position `start` (checked; a mismatch is a programmer error). An entry
// with drafts feeds its fed_tokens speculatively with logits for every token.
ForwardBatch build_forward_batch(const ScheduledBatch& batch, KvPool& kv);

// The token (and logprobs when asked) the entry's request draws from one logits row, as its
// generated token number `generated_index` (the counter of its RNG).
SampledToken sample_entry(const ScheduledSequence& entry, std::span<const float> row, int64_t generated_index);

// Parallel to batch.entries: a token (and logprobs when asked) for each entry with sample == true,
// drawn from its last logits row with step = the sequence's number of generated tokens, so the
// result does not depend on the batch, the chunking or preemptions.
std::vector<SampledToken> sample_batch(const ScheduledBatch& batch, const ForwardOutput& out);

// True when the backend can draw this batch's tokens itself: it samples on a device and no entry
// asks for logprobs (those are computed from host logits) or verifies drafts.
bool can_sample_on_device(const ScheduledBatch& batch, const Backend& backend);
// sample_batch's tokens drawn by backend.sample_rows() from the last forward's logit rows (out
// was computed with host_logits == false, so it holds the row counts only). Rows of entries that
// sample nothing are drawn greedily and dropped.
std::vector<SampledToken> sample_batch_on_device(const ScheduledBatch& batch, const ForwardOutput& out, Backend& backend);

}  // namespace ds4
