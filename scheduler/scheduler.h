// Scheduler: requests as Sequences with counters (num_computed_tokens catches up to num_tokens =
// prompt + generated), and the per-step plan: decodes of running sequences first, then chunked
// prefill of partially computed and newly admitted ones, within max_num_batched_tokens and
// max_num_seqs; admission only when the KV pool takes the whole sequence; preemption by recompute
// (lowest priority, newest first; back to the front of the queue, output kept); room for draft
// tokens on decodes (speculative decoding), and several tokens per step from verified drafts. No
// threads, no model: the Engine calls schedule() and update() on its thread; tests drive it directly.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "scheduler/engine_api.h"
#include "scheduler/kv_pool.h"

namespace ds4 {

struct SchedulerConfig {
  int max_num_seqs = 32;                  // admitted (running) sequences at most
  int64_t max_num_batched_tokens = 1024;  // tokens computed per step at most (split evenly over the pool's budget groups)
  int64_t max_prefill_chunk_tokens = 0;   // per sequence per step; 0: max_num_batched_tokens
  int64_t max_model_len = 0;              // prompt + output positions per sequence, > 0
};

// Why the config cannot be used ("" when it can).
std::string scheduler_config_problem(const SchedulerConfig& config);

struct Sequence {
  RequestId id = 0;
  GenerationRequest request;     // limits and sampling; its prompt_tokens are moved into tokens
  std::vector<int32_t> tokens;   // prompt, then every generated token
  int64_t num_prompt_tokens = 0;
  int64_t num_computed_tokens = 0;  // leading tokens whose KV the pool holds
  uint64_t arrival_order = 0;       // FIFO order within a priority (set by Scheduler::add)
  bool admitted = false;            // holds KV and is in the running set
  bool ever_admitted = false;
  std::shared_ptr<RequestStream> stream;
  RequestUsage usage;
  RequestTiming timing;

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int64_t num_generated() const { return num_tokens() - num_prompt_tokens; }
};

// One sequence's share of a step: tokens [start, start + num_tokens) of seq->tokens, then (decodes
// only, speculative decoding) up to max_drafts draft tokens the pool has room for.
struct ScheduledSequence {
  Sequence* seq = nullptr;
  int64_t start = 0;
  int64_t num_tokens = 0;
  bool sample = false;  // the chunk reaches the end of the sequence: a token is sampled from it
  bool decode = false;  // the one token fed is the sequence's last sampled token
  int64_t max_drafts = 0;            // draft positions reserved (KV room and step budget)
  std::vector<int32_t> drafts;       // set by the speculator: <= max_drafts tokens to verify
  std::vector<int32_t> fed_tokens;   // with drafts: the chunk's token, then the drafts (what is fed)
};

struct ScheduledBatch {
  std::vector<ScheduledSequence> entries;
  int64_t num_tokens = 0;
  int64_t prefill_tokens = 0;
  int64_t decode_tokens = 0;
  int64_t draft_tokens = 0;  // drafts fed (also in num_tokens; set by the speculator)
  int num_preempted = 0;
  uint64_t prefix_queried_tokens = 0;  // tokens looked up in the prefix cache at admissions (re-admissions too)
  uint64_t prefix_hit_tokens = 0;
  bool empty() const { return entries.empty(); }
};

// What the engine sampled for an entry with sample == true.
struct SampledToken {
  int32_t token = -1;
  bool has_logprobs = false;
  SampledLogprobs logprobs;
};

// A sequence's new tokens and/or finish after update(). `owned` holds a finished sequence (the
// scheduler no longer knows it); otherwise seq stays owned by the scheduler.
struct SequenceUpdate {
  Sequence* seq = nullptr;
  std::vector<SampledToken> tokens;  // emitted this step, in order (accepted drafts, then one sampled)
  FinishReason finish = FinishReason::kNone;
  int32_t stop_token = -1;
  std::unique_ptr<Sequence> owned;
};

// The step's token budget, one share per budget group of the pool (KvPool::budget_groups).
class StepBudget {
 public:
  StepBudget(int64_t total, int groups);
  int64_t& of(int group) { return left_.at(static_cast<size_t>(group)); }
  bool any() const;  // some group has budget left

 private:
  std::vector<int64_t> left_;
};

class Scheduler {
 public:
  // eos_token_id < 0: no EOS. kv must outlive the scheduler.
  Scheduler(SchedulerConfig config, KvPool& kv, int32_t eos_token_id);

  const SchedulerConfig& config() const { return config_; }
  // Queues a new sequence (tokens = prompt, no KV yet).
  void add(std::unique_ptr<Sequence> seq);
  // Removes a sequence wherever it is, freeing its KV; null when unknown (finished or never added).
  std::unique_ptr<Sequence> remove(RequestId id);
  // Removes everything (shutdown), freeing all KV.
  std::vector<std::unique_ptr<Sequence>> remove_all();

  // Plans one step. Pointers in the batch stay valid until update(). max_drafts > 0: every decode of
  // a request that allows speculation also reserves room (KV and budget) for up to that many drafts,
  // fewer where max_tokens, max_model_len or the budget leave less.
  ScheduledBatch schedule(int max_drafts = 0);
  // Applies a step's results: advances counters, appends sampled tokens (sampled is parallel to
  // batch.entries), finishes sequences on EOS / stop ids / max_tokens / max_model_len and frees
  // their KV. Returns one update per sampled entry.
  std::vector<SequenceUpdate> update(const ScheduledBatch& batch, std::span<SampledToken> sampled);
  // The same with several tokens per entry: for an entry that fed drafts, the accepted drafts then
  // the token sampled after them (its KV, already rolled back, holds start + num_tokens + accepted
  // positions); otherwise one token (sample) or none. Tokens after a finishing one are dropped.
  std::vector<SequenceUpdate> update(const ScheduledBatch& batch, std::span<std::vector<SampledToken>> emitted);

  size_t num_running() const { return running_.size(); }
  size_t num_waiting() const { return waiting_.size(); }
  size_t num_sequences() const { return all_.size(); }
  bool empty() const { return all_.empty(); }
  const std::vector<Sequence*>& running() const { return running_; }  // scheduling order
  const std::vector<Sequence*>& waiting() const { return waiting_; }  // queue order

 private:
  void schedule_running(ScheduledBatch& batch, StepBudget& budget, bool decodes, int max_drafts);
  int64_t draft_room(const Sequence& seq, int max_drafts, int64_t budget) const;
  void admit_waiting(ScheduledBatch& batch, StepBudget& budget);
  bool make_room(Sequence* seq, int64_t num_tokens, ScheduledBatch& batch, StepBudget& budget);
  void preempt(Sequence* victim, ScheduledBatch& batch, StepBudget& budget);
  void add_entry(ScheduledBatch& batch, Sequence* seq, int64_t num_tokens, int64_t max_drafts = 0);
  void insert_running(Sequence* seq);
  void insert_waiting(Sequence* seq, bool at_front_of_priority);
  FinishReason finish_reason(const Sequence& seq, int32_t token) const;
  std::unique_ptr<Sequence> take(Sequence* seq);
  int64_t chunk_limit(int64_t budget) const;
  int64_t chunk_size(const Sequence& seq, int64_t budget) const;

  SchedulerConfig config_;
  KvPool& kv_;
  int32_t eos_token_id_;
  uint64_t next_arrival_ = 0;
  std::unordered_map<RequestId, std::unique_ptr<Sequence>> all_;
  std::vector<Sequence*> running_;  // by priority (high first), then arrival (old first)
  std::vector<Sequence*> waiting_;  // same order; preempted sequences at the front of their priority
};

}  // namespace ds4
