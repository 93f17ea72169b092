// Speculator (see speculator.h): per-sequence draft state, drafting in batched draft-model calls,
// verification of every entry of a step, rollback, and the step's statistics.
#include "scheduler/speculator.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <unordered_set>

#include "engine/speculative.h"
#include "kernels/splitmix64.h"
#include "scheduler/logprobs.h"
#include "scheduler/step.h"

namespace ds4 {
namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "%s:%d: Speculator: %s\n", __FILE__, __LINE__, what);
  std::abort();
}

double micros_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
}

// At most this many pending MTP inputs per sequence (kept across steps without drafting, so the
// MTP window stays continuous through short stretches of K = 0).
constexpr size_t kMaxPendingExtra = 8;

// Seed of the oracle's own draws for a request.
constexpr uint64_t kOracleSalt = 0x6f7261636c65ull;

}  // namespace

const char* pairing_name(MtpPairing pairing) { return pairing == MtpPairing::kNextToken ? "next" : "same"; }

bool parse_pairing(std::string_view name, MtpPairing& pairing) {
  if (name == "next") pairing = MtpPairing::kNextToken;
  else if (name == "same") pairing = MtpPairing::kSameToken;
  else return false;
  return true;
}

struct Speculator::SeqState {
  std::unique_ptr<SequenceKv> mtp;  // the draft model's state (null without a draft model)
  int64_t true_end = -1;            // rows [window start, true_end) came from true inputs; -1: none
  int32_t preemptions = 0;          // the sequence's count when this state was made
  // The next catch-up inputs: positions [pending_pos, pending_pos + pending_tokens.size()).
  int64_t pending_pos = -1;
  std::vector<int32_t> pending_tokens;
  std::vector<float> pending_states;  // [pending_tokens.size(), state_width]
  int32_t next_token = -1;            // the last emitted token (the same-token pairing feeds it)
  std::vector<TokenDistribution> q;   // this step's draft distributions, parallel to its drafts
};

// One sequence drafting in this step.
struct Speculator::Drafting {
  ScheduledSequence* entry;
  SeqState* st;
  int64_t k;                  // drafts wanted
  std::vector<float> state;   // the MTP output state the next recursive input pairs with
  std::vector<float> logits;  // the MTP logits the next draft is picked from
  bool done = false;
};

Speculator::Speculator(SpeculativeConfig config, Backend& target, DraftModel* draft, int32_t n_vocab, int32_t eos_token_id)
    : config_(std::move(config)),
      target_(target),
      draft_(draft),
      n_vocab_(n_vocab),
      eos_(eos_token_id),
      policy_([&] {
        SpecPolicyConfig p = config_.policy;
        p.max_draft = config_.max_draft;
        p.adaptive = config_.adaptive;
        p.draft_calls_extra = draft && config_.pairing == MtpPairing::kSameToken ? 1 : 0;
        return p;
      }()) {
  if (config_.max_draft < 1 || config_.max_draft > 16) throw std::invalid_argument("speculative decoding: max draft must be in [1, 16]");
  if (!draft_ && !config_.oracle) throw std::invalid_argument("speculative decoding needs a draft model (MTP) or an oracle");
  if (!(config_.oracle_acceptance >= 0.0 && config_.oracle_acceptance <= 1.0))
    throw std::invalid_argument("oracle acceptance must be in [0, 1]");
  if (!target_.supports_rollback()) throw std::invalid_argument("speculative decoding: the backend cannot roll back drafts");
  if (n_vocab_ < 2) throw std::invalid_argument("speculative decoding: vocabulary too small");
  step_.accepted_per_position.assign(config_.max_draft, 0);
}

Speculator::~Speculator() = default;

Speculator::SeqState& Speculator::state_of(const Sequence& seq) {
  std::unique_ptr<SeqState>& st = states_[seq.id];
  if (!st || st->preemptions != seq.usage.preemptions) {  // new, or recomputed since: start over
    st = std::make_unique<SeqState>();
    st->preemptions = seq.usage.preemptions;
    if (draft_) st->mtp = draft_->new_state(config_.max_draft + 1);
  }
  return *st;
}

int Speculator::plan(const Scheduler& scheduler) {
  step_ = SpecStepStats{};
  step_.accepted_per_position.assign(config_.max_draft, 0);
  int decoding = 0;
  for (const Sequence* s : scheduler.running())
    decoding += s->request.speculative && s->num_tokens() - s->num_computed_tokens == 1 && s->num_generated() > 0;
  step_.draft_len = decoding > 0 ? policy_.choose(decoding) : 0;
  return step_.draft_len;
}

ForwardOutput Speculator::timed_draft_call(const std::vector<DraftRun>& runs) {
  const auto t0 = std::chrono::steady_clock::now();
  ForwardOutput out = draft_->forward(runs);
  int64_t rows = 0;
  for (const DraftRun& r : runs) rows += static_cast<int64_t>(r.tokens.size());
  policy_.record_draft_call(rows, micros_since(t0));
  return out;
}

// The MTP's catch-up over the positions the last step made true (its window continues where its
// true rows end, or restarts there), then, for the same-token pairing, one call feeding the last
// emitted token. Leaves each sequence's first draft logits and output state.
void Speculator::catch_up(std::vector<Drafting>& active) {
  const int64_t width = draft_->state_width();
  std::vector<DraftRun> runs;
  for (Drafting& a : active) {
    SeqState& st = *a.st;
    if (st.true_end == st.pending_pos) st.mtp->set_num_tokens(st.pending_pos);
    else draft_->restart(*st.mtp, st.pending_pos);
    runs.push_back({st.mtp.get(), st.pending_tokens, st.pending_states});
  }
  ForwardOutput out = timed_draft_call(runs);
  for (size_t i = 0; i < active.size(); ++i) {
    SeqState& st = *active[i].st;
    st.true_end = st.pending_pos + static_cast<int64_t>(st.pending_tokens.size());
    active[i].state.assign(out.final_states.begin() + i * width, out.final_states.begin() + (i + 1) * width);
    active[i].logits.assign(out.row(i), out.row(i) + out.n_vocab);
  }
  if (config_.pairing != MtpPairing::kSameToken) return;
  // The catch-up predicted the token the target already emitted; feed it to draft the next one.
  runs.clear();
  for (Drafting& a : active) runs.push_back({a.st->mtp.get(), std::span<const int32_t>(&a.st->next_token, 1), a.state});
  out = timed_draft_call(runs);
  for (size_t i = 0; i < active.size(); ++i) {
    active[i].state.assign(out.final_states.begin() + i * width, out.final_states.begin() + (i + 1) * width);
    active[i].logits.assign(out.row(i), out.row(i) + out.n_vocab);
  }
}

bool Speculator::stops(const Sequence& seq, int32_t token) const {
  const GenerationRequest& r = seq.request;
  return (token == eos_ && !r.ignore_eos) ||
         std::find(r.stop_token_ids.begin(), r.stop_token_ids.end(), token) != r.stop_token_ids.end();
}

// Draft j (0-based) of seq proposes the token at index tokens.size() + j, generated number
// num_generated() + j. row: the draft model's logits for it (null in oracle-only mode). -1: none.
int32_t Speculator::pick_draft(const Sequence& seq, int j, const float* row, TokenDistribution& q) const {
  const SamplingParams& sp = seq.request.sampling;
  const uint64_t g = static_cast<uint64_t>(seq.num_generated() + j);
  if (config_.oracle) {
    const int32_t truth = config_.oracle(seq, seq.num_tokens() + j);
    if (truth >= 0 && truth < n_vocab_) {
      const uint64_t seed = splitmix64(sp.seed ^ kOracleSalt);
      const bool agree = speculative_uniform(seed, g, SpecStream::kDraft) < config_.oracle_acceptance;
      const uint64_t other = splitmix64(seed + g) % uint64_t(n_vocab_ - 1);
      const int32_t d = agree ? truth : static_cast<int32_t>((truth + 1 + other) % uint64_t(n_vocab_));
      q = point_mass(d);
      return d;
    }
    if (!row) return -1;
  }
  const std::span<const float> logits(row, static_cast<size_t>(n_vocab_));
  q = sampling_distribution(logits, sp);
  return sp.temperature <= 0.0f ? q.ids[0] : sample_from(q, speculative_uniform(sp.seed, g, SpecStream::kDraft));
}

// Picks draft j for every sequence still drafting, then runs the draft model on those that want
// another one (input: the draft just picked, paired with the model's own output state).
void Speculator::draft_tokens(std::vector<Drafting>& active) {
  const int64_t width = draft_ ? draft_->state_width() : 0;
  for (int j = 0;; ++j) {
    std::vector<Drafting*> next;
    for (Drafting& a : active) {
      if (a.done) continue;
      const Sequence& seq = *a.entry->seq;
      TokenDistribution q;
      const int32_t d = pick_draft(seq, j, a.logits.empty() ? nullptr : a.logits.data(), q);
      if (d < 0) {  // nothing to propose (oracle-only mode past the known tokens)
        a.done = true;
        continue;
      }
      a.entry->drafts.push_back(d);
      a.st->q.push_back(std::move(q));
      a.done = static_cast<int64_t>(a.entry->drafts.size()) >= a.k || stops(seq, d);
      if (!a.done) next.push_back(&a);
    }
    if (next.empty()) return;
    if (!draft_) continue;
    std::vector<DraftRun> runs;
    for (Drafting* a : next) runs.push_back({a->st->mtp.get(), std::span<const int32_t>(&a->entry->drafts.back(), 1), a->state});
    const ForwardOutput out = timed_draft_call(runs);
    for (size_t i = 0; i < next.size(); ++i) {
      next[i]->state.assign(out.final_states.begin() + i * width, out.final_states.begin() + (i + 1) * width);
      next[i]->logits.assign(out.row(i), out.row(i) + out.n_vocab);
    }
  }
}

void Speculator::draft(ScheduledBatch& batch) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Drafting> active;
  for (ScheduledSequence& e : batch.entries) {
    if (e.max_drafts < 1 || !e.decode) continue;
    SeqState& st = state_of(*e.seq);
    st.q.clear();
    // The MTP needs the inputs the last step left; a fresh state (a recompute) has none yet.
    if (draft_ && (st.pending_tokens.empty() || st.pending_pos + int64_t(st.pending_tokens.size()) != e.start)) continue;
    active.push_back({&e, &st, e.max_drafts, {}, {}, false});
  }
  if (active.empty()) return;
  if (draft_) catch_up(active);
  draft_tokens(active);
  for (Drafting& a : active) {
    ScheduledSequence& e = *a.entry;
    e.fed_tokens.assign(1, e.seq->tokens[e.start]);
    e.fed_tokens.insert(e.fed_tokens.end(), e.drafts.begin(), e.drafts.end());
    batch.draft_tokens += static_cast<int64_t>(e.drafts.size());
    batch.num_tokens += static_cast<int64_t>(e.drafts.size());
  }
  step_.draft_us = micros_since(t0);
}

// Keeps what the draft model needs next from an entry that emitted tokens: the target's states of
// the positions that are now true, each paired with its token (next-token pairing: the token after
// it; same-token pairing: its own), and the last emitted token.
void Speculator::remember_inputs(const ScheduledSequence& e, const ForwardOutput& out, size_t i,
                                 std::span<const int32_t> emitted) {
  if (!e.seq->request.speculative) return;
  SeqState& st = state_of(*e.seq);
  st.next_token = emitted.back();
  if (!draft_) return;
  const int64_t width = draft_->state_width();
  if (static_cast<int64_t>(out.final_states.size()) < (out.first_row[i] + out.n_rows[i]) * width)
    fail("the backend returned no final states (the MTP needs them)");
  // Rows of this entry that are true now: with drafts, rows 0..accepted; else the last row.
  const int64_t n_true = e.drafts.empty() ? 1 : static_cast<int64_t>(emitted.size());
  const int64_t first_row = e.drafts.empty() ? out.first_row[i] + out.n_rows[i] - 1 : out.first_row[i];
  const int64_t pos = e.drafts.empty() ? e.start + e.num_tokens - 1 : e.start;
  std::vector<int32_t> tokens;
  for (int64_t r = 0; r < n_true; ++r) {
    if (config_.pairing == MtpPairing::kNextToken) tokens.push_back(emitted[r]);
    else tokens.push_back(e.drafts.empty() ? e.seq->tokens[pos] : (r == 0 ? e.fed_tokens[0] : emitted[r - 1]));
  }
  const bool continues = !st.pending_tokens.empty() && st.pending_pos + int64_t(st.pending_tokens.size()) == pos;
  if (!continues) {
    st.pending_pos = pos;
    st.pending_tokens.clear();
    st.pending_states.clear();
  }
  st.pending_tokens.insert(st.pending_tokens.end(), tokens.begin(), tokens.end());
  st.pending_states.insert(st.pending_states.end(), out.final_states.begin() + first_row * width,
                           out.final_states.begin() + (first_row + n_true) * width);
  const size_t cap = static_cast<size_t>(config_.max_draft) + 1 + kMaxPendingExtra;
  if (st.pending_tokens.size() > cap) {  // drop the oldest: the window then restarts later
    const size_t drop = st.pending_tokens.size() - cap;
    st.pending_pos += static_cast<int64_t>(drop);
    st.pending_tokens.erase(st.pending_tokens.begin(), st.pending_tokens.begin() + drop);
    st.pending_states.erase(st.pending_states.begin(), st.pending_states.begin() + drop * width);
  }
}

// Verification of one entry with drafts: the emitted tokens, the KV rolled back to the true part.
std::vector<SampledToken> Speculator::verify_entry(const ScheduledSequence& e, const ForwardOutput& out, size_t i,
                                                   KvPool& kv) {
  const Sequence& seq = *e.seq;
  const SamplingParams& sp = seq.request.sampling;
  const int64_t k = static_cast<int64_t>(e.drafts.size());
  SeqState& st = state_of(seq);
  if (out.n_rows[i] != k + 1 || static_cast<int64_t>(st.q.size()) != k) fail("verification rows do not match the drafts");
  std::vector<TokenDistribution> p;
  for (int64_t j = 0; j <= k; ++j) p.push_back(sampling_distribution({out.row(i, j), size_t(out.n_vocab)}, sp));
  const uint64_t g0 = static_cast<uint64_t>(seq.num_generated());
  const std::vector<int32_t> emitted = verify_chain(p, st.q, e.drafts, [&](int j, SpecStream stream) {
    return stream == kBonusStream ? sampling_uniform(sp.seed, g0 + j) : speculative_uniform(sp.seed, g0 + j, stream);
  });
  const int64_t accepted = static_cast<int64_t>(emitted.size()) - 1;
  rollbacks_.push_back({&kv.kv(seq.id), e.start + 1 + accepted});  // done for the whole step in verify()

  std::vector<SampledToken> tokens(emitted.size());
  for (size_t j = 0; j < emitted.size(); ++j) {
    tokens[j].token = emitted[j];
    if (seq.request.logprobs || seq.request.top_logprobs > 0) {
      tokens[j].has_logprobs = true;
      tokens[j].logprobs = compute_logprobs({out.row(i, int64_t(j)), size_t(out.n_vocab)}, emitted[j], seq.request.top_logprobs);
    }
  }
  policy_.record_verification(static_cast<int>(k), static_cast<int>(accepted));
  step_.drafts += 1;
  step_.draft_tokens += k;
  step_.accepted_tokens += accepted;
  for (int64_t j = 0; j < accepted; ++j) step_.accepted_per_position[j] += 1;
  st.q.clear();
  return tokens;
}

std::vector<std::vector<SampledToken>> Speculator::verify(const ScheduledBatch& batch, const ForwardOutput& out,
                                                          KvPool& kv, double forward_us) {
  if (out.n_rows.size() != batch.entries.size()) fail("forward output does not match the batch");
  policy_.record_target(batch.num_tokens, forward_us);
  std::vector<std::vector<SampledToken>> result(batch.entries.size());
  std::vector<int32_t> emitted;
  rollbacks_.clear();
  for (size_t i = 0; i < batch.entries.size(); ++i) {
    const ScheduledSequence& e = batch.entries[i];
    if (!e.sample) continue;
    if (e.drafts.empty()) {
      const std::span<const float> row(out.row(i, out.n_rows[i] - 1), static_cast<size_t>(out.n_vocab));
      result[i].push_back(sample_entry(e, row, e.seq->num_generated()));
    } else {
      result[i] = verify_entry(e, out, i, kv);
    }
    emitted.clear();
    for (const SampledToken& t : result[i]) emitted.push_back(t.token);
    remember_inputs(e, out, i, emitted);
  }
  if (!rollbacks_.empty()) target_.rollback_all(rollbacks_);  // before the scheduler's update
  return result;
}

void Speculator::retain(const std::vector<Sequence*>& running) {
  std::unordered_set<uint64_t> alive;
  for (const Sequence* s : running) alive.insert(s->id);
  for (auto it = states_.begin(); it != states_.end();) it = alive.count(it->first) ? std::next(it) : states_.erase(it);
}

}  // namespace ds4
