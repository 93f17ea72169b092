// Speculator: speculative decoding in the engine loop. Per step: the policy picks K (spec_policy.h);
// every decode of a request that allows it gets up to K draft tokens from the draft model (the MTP
// module), all drafts of all sequences are verified in the one batched target forward (each decode
// feeds its last token plus its drafts, logits for every row), the longest acceptable prefix plus
// one target token is emitted (engine/speculative.h: exact match for greedy, the standard rule for
// sampling), and the backend rolls every rejected draft back exactly (Backend::rollback).
// MTP inputs: a hidden state paired with a token. kNextToken (DeepSeek-V3 paper, vLLM) pairs the
// target's final state at position i with token i+1 and predicts token i+2; kSameToken (ds4) pairs
// it with token i (predicting token i+1, which the target already gave, so one more draft call
// feeds that token). After each verification the MTP first catches up over the accepted positions
// with the target's states (its raw window then holds rows from true inputs only), then drafts
// recursively from its own output states. Oracle mode (benchmarks) forces drafts to the target's
// known tokens at a chosen rate. Owned by the engine thread (Engine or a test driver).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/draft_model.h"
#include "engine/forward.h"
#include "engine/sampler.h"
#include "scheduler/kv_pool.h"
#include "scheduler/scheduler.h"
#include "scheduler/spec_policy.h"

namespace ds4 {

enum class MtpPairing { kNextToken, kSameToken };
const char* pairing_name(MtpPairing pairing);              // "next" | "same"
bool parse_pairing(std::string_view name, MtpPairing& pairing);

struct SpeculativeConfig {
  int max_draft = 3;                          // K at most per sequence and step, >= 1
  bool adaptive = true;                       // K from the policy each step; false: always max_draft
  MtpPairing pairing = MtpPairing::kNextToken;
  // Oracle (benchmarks): the target's token at index `index` of seq->tokens (-1: unknown). A draft
  // is forced to it with probability oracle_acceptance, else to another token; drafts then have
  // point-mass draft distributions, so sampled requests stay exact too.
  std::function<int32_t(const Sequence& seq, int64_t index)> oracle;
  double oracle_acceptance = 1.0;
  SpecPolicyConfig policy;                    // max_draft / adaptive are taken from above
};

// What one step did (the engine copies it into StepStats).
struct SpecStepStats {
  int draft_len = 0;                 // K chosen
  int drafts = 0;                    // sequences that verified drafts
  int64_t draft_tokens = 0;
  int64_t accepted_tokens = 0;
  std::vector<int64_t> accepted_per_position;  // [max_draft]
  double draft_us = 0;
};

class Speculator {
 public:
  // target must support rollback; draft may be null only in oracle mode (drafts are then free).
  // Throws std::invalid_argument naming a bad configuration. eos_token_id < 0: none.
  Speculator(SpeculativeConfig config, Backend& target, DraftModel* draft, int32_t n_vocab, int32_t eos_token_id);
  ~Speculator();

  const SpeculativeConfig& config() const { return config_; }
  const SpecPolicy& policy() const { return policy_; }
  SpecPolicy& policy() { return policy_; }

  // Start of a step: K for this step (pass it to Scheduler::schedule).
  int plan(const Scheduler& scheduler);
  // After schedule(): drafts (up to max_drafts) for every decode entry that reserved room.
  void draft(ScheduledBatch& batch);
  // After the target forward of that batch: per entry the emitted tokens (see Scheduler::update);
  // entries without drafts are sampled as sample_batch() samples them. Rolls rejected drafts back
  // and keeps the MTP's next inputs. forward_us: the forward's time (for the policy).
  std::vector<std::vector<SampledToken>> verify(const ScheduledBatch& batch, const ForwardOutput& out, KvPool& kv,
                                                double forward_us);
  // After update(): forgets sequences that are no longer running (finished, aborted, preempted).
  void retain(const std::vector<Sequence*>& running);

  const SpecStepStats& step_stats() const { return step_; }
  size_t num_states() const { return states_.size(); }

 private:
  struct SeqState;
  struct Drafting;

  SeqState& state_of(const Sequence& seq);
  bool uses_draft_model() const { return draft_ != nullptr; }
  void catch_up(std::vector<Drafting>& active);
  void draft_tokens(std::vector<Drafting>& active);
  ForwardOutput timed_draft_call(const std::vector<DraftRun>& runs);
  int32_t pick_draft(const Sequence& seq, int j, const float* row, TokenDistribution& q) const;
  bool stops(const Sequence& seq, int32_t token) const;
  std::vector<SampledToken> verify_entry(const ScheduledSequence& e, const ForwardOutput& out, size_t i, KvPool& kv);
  void remember_inputs(const ScheduledSequence& e, const ForwardOutput& out, size_t i, std::span<const int32_t> emitted);

  SpeculativeConfig config_;
  Backend& target_;
  DraftModel* draft_;
  int32_t n_vocab_, eos_;
  SpecPolicy policy_;
  std::unordered_map<uint64_t, std::unique_ptr<SeqState>> states_;
  std::vector<Backend::RollbackTo> rollbacks_;  // of the step being verified
  SpecStepStats step_;
};

}  // namespace ds4
