// build_forward_batch / sample_batch / sample_batch_on_device (see step.h).
#include "scheduler/step.h"

#include <cstdio>
#include <cstdlib>

#include "engine/sampler.h"
#include "scheduler/logprobs.h"

namespace ds4 {
namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "%s:%d: engine step: %s\n", __FILE__, __LINE__, what);
  std::abort();
}

}  // namespace

ForwardBatch build_forward_batch(const ScheduledBatch& batch, KvPool& kv) {
  ForwardBatch fb;
  fb.sequences.reserve(batch.entries.size());
  for (const ScheduledSequence& e : batch.entries) {
    SequenceKv& state = kv.kv(e.seq->id);
    if (state.num_tokens() != e.start) fail("KV state position differs from the scheduled start");
    if (e.num_tokens < 1 || e.start + e.num_tokens > e.seq->num_tokens()) fail("scheduled chunk out of range");
    if (e.drafts.empty()) {
      fb.sequences.push_back({&state, std::span<const int32_t>(e.seq->tokens).subspan(e.start, e.num_tokens), false});
      continue;
    }
    // A decode with drafts: logits after every fed token, and a tail the verifier may roll back.
    if (!e.decode || static_cast<int64_t>(e.drafts.size()) > e.max_drafts ||
        e.fed_tokens.size() != e.drafts.size() + 1 || e.fed_tokens[0] != e.seq->tokens[e.start])
      fail("drafts on an entry that is not a decode with room for them");
    fb.sequences.push_back({&state, e.fed_tokens, true, true});
  }
  return fb;
}

SampledToken sample_entry(const ScheduledSequence& e, std::span<const float> row, int64_t generated_index) {
  const GenerationRequest& r = e.seq->request;
  SampledToken s;
  s.token = sample_token(row, r.sampling, static_cast<uint64_t>(generated_index));
  if (r.logprobs || r.top_logprobs > 0) {
    s.has_logprobs = true;
    s.logprobs = compute_logprobs(row, s.token, r.top_logprobs);
  }
  return s;
}

std::vector<SampledToken> sample_batch(const ScheduledBatch& batch, const ForwardOutput& out) {
  std::vector<SampledToken> sampled(batch.entries.size());
  if (out.n_rows.size() != batch.entries.size()) fail("forward output does not match the batch");
  for (size_t i = 0; i < batch.entries.size(); ++i) {
    const ScheduledSequence& e = batch.entries[i];
    if (!e.sample) continue;
    if (out.n_rows[i] < 1) fail("no logits row for a sampled sequence");
    const std::span<const float> row(out.row(i, out.n_rows[i] - 1), static_cast<size_t>(out.n_vocab));
    sampled[i] = sample_entry(e, row, e.seq->num_generated());
  }
  return sampled;
}

bool can_sample_on_device(const ScheduledBatch& batch, const Backend& backend) {
  if (!backend.supports_device_sampling()) return false;
  for (const ScheduledSequence& e : batch.entries) {
    const GenerationRequest& r = e.seq->request;
    if (!e.drafts.empty() || (e.sample && (r.logprobs || r.top_logprobs > 0))) return false;
  }
  return true;
}

std::vector<SampledToken> sample_batch_on_device(const ScheduledBatch& batch, const ForwardOutput& out,
                                                 Backend& backend) {
  if (out.n_rows.size() != batch.entries.size() || out.first_row.size() != batch.entries.size())
    fail("forward output does not match the batch");
  std::vector<RowSampling> rows;
  for (size_t i = 0; i < batch.entries.size(); ++i) {
    const ScheduledSequence& e = batch.entries[i];
    if (e.sample && out.n_rows[i] < 1) fail("no logits row for a sampled sequence");
    for (int64_t r = 0; r < out.n_rows[i]; ++r) {
      RowSampling row;
      row.params.temperature = 0.0f;  // rows nobody samples: the cheapest draw
      if (e.sample && r + 1 == out.n_rows[i]) {
        row.params = e.seq->request.sampling;
        row.step = static_cast<uint64_t>(e.seq->num_generated());
      }
      rows.push_back(row);
    }
  }
  const std::vector<int32_t> tokens = backend.sample_rows(rows);
  if (tokens.size() != rows.size()) fail("device sampler returned the wrong number of tokens");
  std::vector<SampledToken> sampled(batch.entries.size());
  for (size_t i = 0; i < batch.entries.size(); ++i)
    if (batch.entries[i].sample) sampled[i].token = tokens[static_cast<size_t>(out.first_row[i] + out.n_rows[i] - 1)];
  return sampled;
}

}  // namespace ds4
