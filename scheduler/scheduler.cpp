// Scheduler implementation (see scheduler.h). One step: (1) one token for every running sequence
// whose remaining work is a single token (decodes: they never wait behind a prefill), (2) chunks
// for running sequences with more left (partial prefills, recomputation), (3) admission of waiting
// sequences in queue order while the budget, max_num_seqs and the KV pool allow. When a sequence
// cannot grow, the last running sequence (lowest priority, newest) that shares its pool is preempted
// by recompute.
// Decodes may reserve room for draft tokens; update() then takes the accepted drafts too.
#include "scheduler/scheduler.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace ds4 {
namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "%s:%d: Scheduler: %s\n", __FILE__, __LINE__, what);
  std::abort();
}

// Running and waiting order: higher priority first, then older first.
bool runs_before(const Sequence* a, const Sequence* b) {
  if (a->request.priority != b->request.priority) return a->request.priority > b->request.priority;
  return a->arrival_order < b->arrival_order;
}

}  // namespace

std::string scheduler_config_problem(const SchedulerConfig& c) {
  if (c.max_num_seqs < 1) return "max_num_seqs must be >= 1";
  if (c.max_num_batched_tokens < 1) return "max_num_batched_tokens must be >= 1";
  if (c.max_prefill_chunk_tokens < 0) return "max_prefill_chunk_tokens must be >= 0";
  if (c.max_model_len < 2) return "max_model_len must be >= 2";
  return "";
}

StepBudget::StepBudget(int64_t total, int groups) {
  if (groups < 1) fail("a pool without budget groups");
  for (int g = 0; g < groups; ++g) left_.push_back(total / groups + (g < total % groups ? 1 : 0));
}

bool StepBudget::any() const {
  return std::any_of(left_.begin(), left_.end(), [](int64_t b) { return b > 0; });
}

Scheduler::Scheduler(SchedulerConfig config, KvPool& kv, int32_t eos_token_id)
    : config_(config), kv_(kv), eos_token_id_(eos_token_id) {
  if (const std::string p = scheduler_config_problem(config_); !p.empty()) fail(p.c_str());
}

void Scheduler::add(std::unique_ptr<Sequence> seq) {
  if (!seq || seq->tokens.empty() || all_.count(seq->id)) fail("add: empty or duplicate sequence");
  seq->arrival_order = next_arrival_++;
  seq->num_prompt_tokens = seq->num_tokens();
  seq->usage.prompt_tokens = seq->num_prompt_tokens;
  Sequence* s = seq.get();
  all_.emplace(s->id, std::move(seq));
  insert_waiting(s, false);
}

std::unique_ptr<Sequence> Scheduler::take(Sequence* seq) {
  if (seq->admitted) {
    kv_.release(seq->id);
    seq->admitted = false;
    running_.erase(std::find(running_.begin(), running_.end(), seq));
  } else {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), seq));
  }
  auto it = all_.find(seq->id);
  std::unique_ptr<Sequence> owned = std::move(it->second);
  all_.erase(it);
  return owned;
}

std::unique_ptr<Sequence> Scheduler::remove(RequestId id) {
  auto it = all_.find(id);
  return it == all_.end() ? nullptr : take(it->second.get());
}

std::vector<std::unique_ptr<Sequence>> Scheduler::remove_all() {
  std::vector<std::unique_ptr<Sequence>> out;
  while (!all_.empty()) out.push_back(take(all_.begin()->second.get()));
  return out;
}

void Scheduler::insert_running(Sequence* seq) {
  running_.insert(std::upper_bound(running_.begin(), running_.end(), seq, runs_before), seq);
}

// New arrivals queue behind every sequence of at least their priority; preempted ones go ahead of
// every waiting sequence of their priority (they were admitted before those, and keep their output).
void Scheduler::insert_waiting(Sequence* seq, bool at_front_of_priority) {
  const int prio = seq->request.priority;
  auto pos = at_front_of_priority
                 ? std::find_if(waiting_.begin(), waiting_.end(), [&](Sequence* w) { return w->request.priority <= prio; })
                 : std::find_if(waiting_.begin(), waiting_.end(), [&](Sequence* w) { return w->request.priority < prio; });
  waiting_.insert(pos, seq);
}

int64_t Scheduler::chunk_limit(int64_t budget) const {
  const int64_t cap = config_.max_prefill_chunk_tokens > 0 ? config_.max_prefill_chunk_tokens : budget;
  return std::min(budget, cap);
}

// Tokens of seq to compute now: what is left, within the budget and the per-sequence cap. With an
// aligned pool a multi-token chunk that crosses a block boundary ends on the last one it crosses
// (a prefix-cache resume point there); the rest follows in the next step.
int64_t Scheduler::chunk_size(const Sequence& seq, int64_t budget) const {
  const int64_t start = seq.num_computed_tokens;
  int64_t n = std::min(seq.num_tokens() - start, chunk_limit(budget));
  if (n > 1 && kv_.aligned_chunks()) {
    const int64_t bt = kv_.block_tokens();
    const int64_t boundary = (start + n) / bt * bt;
    if (boundary > start) n = boundary - start;
  }
  return n;
}

void Scheduler::add_entry(ScheduledBatch& batch, Sequence* seq, int64_t n, int64_t max_drafts) {
  ScheduledSequence e;
  e.seq = seq;
  e.start = seq->num_computed_tokens;
  e.num_tokens = n;
  e.max_drafts = max_drafts;
  e.sample = e.start + n == seq->num_tokens();
  e.decode = n == 1 && e.sample && seq->num_generated() > 0;
  batch.entries.push_back(e);
  batch.num_tokens += n;
  (e.decode ? batch.decode_tokens : batch.prefill_tokens) += n;
  if (seq->timing.first_scheduled == EngineClock::time_point{}) seq->timing.first_scheduled = EngineClock::now();
}

// Gives up the victim's KV; it restarts from its cached prefix (or position 0) when re-admitted.
// If the victim was already planned in this step, its entry is withdrawn.
void Scheduler::preempt(Sequence* victim, ScheduledBatch& batch, StepBudget& budget) {
  auto e = std::find_if(batch.entries.begin(), batch.entries.end(), [&](const auto& x) { return x.seq == victim; });
  if (e != batch.entries.end()) {
    budget.of(kv_.budget_group(victim->id)) += e->num_tokens + e->max_drafts;  // before the release
    batch.num_tokens -= e->num_tokens;
    (e->decode ? batch.decode_tokens : batch.prefill_tokens) -= e->num_tokens;
    batch.entries.erase(e);
  }
  kv_.release(victim->id);
  victim->admitted = false;
  victim->num_computed_tokens = 0;
  victim->usage.preemptions += 1;
  running_.erase(std::find(running_.begin(), running_.end(), victim));
  insert_waiting(victim, true);
  batch.num_preempted += 1;
}

// Grows seq's KV to num_tokens positions, preempting from the back of the running set (among the
// sequences that share seq's room: KvPool::shares_room) until it fits; false when seq itself had
// to be preempted.
bool Scheduler::make_room(Sequence* seq, int64_t num_tokens, ScheduledBatch& batch, StepBudget& budget) {
  while (!kv_.grow(seq->id, num_tokens)) {
    // The last running sequence whose release can make room (seq itself at worst).
    Sequence* victim = *std::find_if(running_.rbegin(), running_.rend(),
                                     [&](Sequence* s) { return s == seq || kv_.shares_room(seq->id, s->id); });
    preempt(victim, batch, budget);
    if (victim == seq) return false;
  }
  return true;
}

// Draft tokens a decode of seq may verify: the output it may still produce after the next token
// (max_tokens, max_model_len), within the budget left after that token.
int64_t Scheduler::draft_room(const Sequence& seq, int max_drafts, int64_t budget) const {
  if (max_drafts <= 0 || !seq.request.speculative || seq.num_generated() < 1) return 0;
  const int64_t more = std::min(seq.request.max_tokens - seq.num_generated(), config_.max_model_len - seq.num_tokens()) - 1;
  return std::max<int64_t>(0, std::min({int64_t(max_drafts), more, budget - 1}));
}

// decodes: sequences with exactly one token left; otherwise the ones with more (chunked). Each
// sequence draws on its budget group's share.
void Scheduler::schedule_running(ScheduledBatch& batch, StepBudget& budget, bool decodes, int max_drafts) {
  for (size_t i = 0; i < running_.size() && budget.any(); ++i) {
    Sequence* seq = running_[i];
    const int64_t left = seq->num_tokens() - seq->num_computed_tokens;
    if (left < 1) fail("running sequence with nothing to compute");
    if ((left == 1) != decodes) continue;  // the two passes plan disjoint sets
    const int group = kv_.budget_group(seq->id);
    if (budget.of(group) <= 0) continue;
    const int64_t n = decodes ? 1 : chunk_size(*seq, budget.of(group));
    int64_t k = decodes ? draft_room(*seq, max_drafts, budget.of(group)) : 0;
    if (k > 0 && !kv_.grow(seq->id, seq->num_computed_tokens + n + k)) k = 0;  // drafts never preempt anyone
    if (!make_room(seq, seq->num_computed_tokens + n, batch, budget)) {
      --i;  // seq was the last running sequence and left; nothing after it remains
      continue;
    }
    add_entry(batch, seq, n, k);
    budget.of(group) -= n + k;
  }
}

// Admits waiting sequences in queue order (head-of-line: a sequence that does not fit blocks the
// ones behind it, so long prompts are not starved by short ones). A sequence admitted to a budget
// group with no budget left this step computes from the next step on.
void Scheduler::admit_waiting(ScheduledBatch& batch, StepBudget& budget) {
  while (budget.any() && !waiting_.empty() && running_.size() < static_cast<size_t>(config_.max_num_seqs)) {
    Sequence* seq = waiting_.front();
    const int64_t cached = kv_.find_cached_prefix(seq->tokens);
    if (cached < 0 || cached >= seq->num_tokens() || cached % kv_.block_tokens() != 0) fail("bad cached prefix length");
    if (!kv_.admit(seq->id, seq->tokens, cached, seq->num_tokens())) break;
    if (kv_.kv(seq->id).num_tokens() != cached) fail("admitted KV state does not start at the cached prefix");
    waiting_.erase(waiting_.begin());
    if (!seq->ever_admitted) seq->usage.cached_prompt_tokens = cached;
    batch.prefix_queried_tokens += static_cast<uint64_t>(seq->num_tokens());
    batch.prefix_hit_tokens += static_cast<uint64_t>(cached);
    seq->admitted = seq->ever_admitted = true;
    seq->num_computed_tokens = cached;
    insert_running(seq);
    int64_t& share = budget.of(kv_.budget_group(seq->id));
    if (share <= 0) continue;
    const int64_t n = chunk_size(*seq, share);
    add_entry(batch, seq, n);
    share -= n;
  }
}

ScheduledBatch Scheduler::schedule(int max_drafts) {
  ScheduledBatch batch;
  StepBudget budget(config_.max_num_batched_tokens, kv_.budget_groups());
  schedule_running(batch, budget, true, max_drafts);
  schedule_running(batch, budget, false, 0);
  // After a preemption the pool is full: admitting now would only evict someone again.
  if (batch.num_preempted == 0) admit_waiting(batch, budget);
  return batch;
}

FinishReason Scheduler::finish_reason(const Sequence& seq, int32_t token) const {
  const GenerationRequest& r = seq.request;
  if (token == eos_token_id_ && !r.ignore_eos) return FinishReason::kStop;
  if (std::find(r.stop_token_ids.begin(), r.stop_token_ids.end(), token) != r.stop_token_ids.end())
    return FinishReason::kStop;
  if (seq.num_generated() >= r.max_tokens || seq.num_tokens() >= config_.max_model_len) return FinishReason::kLength;
  return FinishReason::kNone;
}

std::vector<SequenceUpdate> Scheduler::update(const ScheduledBatch& batch, std::span<SampledToken> sampled) {
  if (sampled.size() != batch.entries.size()) fail("update: sampled tokens do not match the batch");
  std::vector<std::vector<SampledToken>> emitted(sampled.size());
  for (size_t i = 0; i < sampled.size(); ++i)
    if (batch.entries[i].sample) emitted[i].push_back(std::move(sampled[i]));
  return update(batch, emitted);
}

std::vector<SequenceUpdate> Scheduler::update(const ScheduledBatch& batch, std::span<std::vector<SampledToken>> emitted) {
  if (emitted.size() != batch.entries.size()) fail("update: emitted tokens do not match the batch");
  std::vector<SequenceUpdate> updates;
  const auto now = EngineClock::now();
  for (size_t i = 0; i < batch.entries.size(); ++i) {
    const ScheduledSequence& e = batch.entries[i];
    Sequence* seq = e.seq;
    std::vector<SampledToken>& tokens = emitted[i];
    if (seq->num_computed_tokens != e.start) fail("update: sequence moved since schedule()");
    if (e.sample != !tokens.empty() || tokens.size() > e.drafts.size() + 1) fail("update: wrong number of tokens for an entry");
    // Accepted drafts are computed positions: the pool publishes them with their ids, so every
    // emitted id is appended first; the output then stops at a finishing token.
    const size_t base = seq->tokens.size();
    for (const SampledToken& t : tokens) seq->tokens.push_back(t.token);
    seq->num_computed_tokens += e.num_tokens + (tokens.empty() ? 0 : static_cast<int64_t>(tokens.size()) - 1);
    kv_.computed(seq->id, seq->tokens, seq->num_computed_tokens);
    seq->tokens.resize(base);
    if (!e.sample) continue;
    SequenceUpdate u;
    u.seq = seq;
    for (SampledToken& t : tokens) {
      seq->tokens.push_back(t.token);
      u.tokens.push_back(std::move(t));
      u.finish = finish_reason(*seq, seq->tokens.back());
      if (u.finish != FinishReason::kNone) break;
    }
    seq->usage.completion_tokens = seq->num_generated();
    if (seq->timing.first_token == EngineClock::time_point{}) seq->timing.first_token = now;
    if (u.finish == FinishReason::kStop) u.stop_token = seq->tokens.back();
    if (u.finish != FinishReason::kNone) u.owned = take(seq);
    updates.push_back(std::move(u));
  }
  return updates;
}

}  // namespace ds4
