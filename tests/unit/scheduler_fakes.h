// Test doubles for the scheduler tests (no model): FakeKv remembers the token ids a sequence's
// "KV" holds; FakeBackend checks each chunk continues exactly where the state ends and returns
// logits that are a hash of the whole history (so any wrongly fed, skipped or repeated token changes
// later tokens); FakePool is a BudgetKvPool of FakeKv with an optional exact prefix cache.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "engine/forward.h"
#include "scheduler/budget_kv_pool.h"
#include "scheduler/scheduler.h"
#include "scheduler/step.h"

namespace ds4::test {

class FakeKv final : public SequenceKv {
 public:
  std::vector<int32_t> history;  // token ids whose "KV" this state holds
  int64_t reserved = 0;

  int64_t num_tokens() const override { return n_; }
  void set_num_tokens(int64_t n) override { n_ = n; }
  bool reserve(int64_t n) override {
    reserved = std::max(reserved, n);
    return true;
  }
  float* raw_row(int, int64_t) override { std::abort(); }
  float* comp_row(int, int64_t) override { std::abort(); }
  float* index_row(int, int64_t) override { std::abort(); }
  float* frontier_kv(int, bool) override { std::abort(); }
  float* frontier_score(int, bool) override { std::abort(); }

 private:
  int64_t n_ = 0;
};

inline uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

class FakeBackend final : public Backend {
 public:
  explicit FakeBackend(int n_vocab = 64) : n_vocab_(n_vocab) {}
  int n_vocab() const { return n_vocab_; }
  int calls = 0;

  ForwardOutput forward(const ForwardBatch& batch) override {
    ++calls;
    ForwardOutput out;
    out.n_vocab = n_vocab_;
    for (const SequenceInput& in : batch.sequences) {
      auto* kv = dynamic_cast<FakeKv*>(in.kv);
      if (!kv || kv->num_tokens() != static_cast<int64_t>(kv->history.size()) || in.tokens.empty()) std::abort();
      // The pool must have made room before the step (the real pool's reserve() would fail).
      if (kv->reserved < kv->num_tokens() + static_cast<int64_t>(in.tokens.size())) std::abort();
      out.first_row.push_back(static_cast<int64_t>(out.logits.size() / n_vocab_));
      const size_t n = in.tokens.size();
      for (size_t i = 0; i < n; ++i) {
        kv->history.push_back(in.tokens[i]);
        if (in.all_logits || i + 1 == n) append_row(kv->history, out.logits);
      }
      out.n_rows.push_back(static_cast<int64_t>(out.logits.size() / n_vocab_) - out.first_row.back());
      kv->set_num_tokens(kv->num_tokens() + static_cast<int64_t>(n));
    }
    return out;
  }

 private:
  void append_row(const std::vector<int32_t>& history, std::vector<float>& logits) const {
    uint64_t h = 0x1234;
    for (int32_t t : history) h = mix(h ^ static_cast<uint64_t>(t));
    for (int v = 0; v < n_vocab_; ++v) logits.push_back(static_cast<float>(mix(h + v) >> 40) * 0x1.0p-21f);
  }
  int n_vocab_;
};

// Block accounting from BudgetKvPool; with prefix_cache, full blocks of computed tokens become
// reusable prefixes (unbounded cache: this tests the scheduler's use of hits, not eviction).
class FakePool final : public KvPool {
 public:
  FakePool(int64_t total_blocks, int64_t block_tokens, int max_sequences = 1024, bool prefix_cache = false)
      : budget_(total_blocks, block_tokens, max_sequences, [] { return std::make_unique<FakeKv>(); }),
        prefix_cache_(prefix_cache) {}

  int64_t block_tokens() const override { return budget_.block_tokens(); }
  int64_t max_sequence_tokens() const override { return budget_.max_sequence_tokens(); }
  bool aligned_chunks() const override { return aligned; }
  int64_t find_cached_prefix(std::span<const int32_t> tokens) override {
    int64_t best = 0;
    for (int64_t n = block_tokens(); n < static_cast<int64_t>(tokens.size()); n += block_tokens())
      if (cached_.count(std::vector<int32_t>(tokens.begin(), tokens.begin() + n))) best = n;
    return best;
  }
  bool admit(SeqId seq, std::span<const int32_t> tokens, int64_t cached, int64_t num_tokens) override {
    if (!budget_.admit(seq, tokens, 0, num_tokens)) return false;
    auto& kv = static_cast<FakeKv&>(budget_.kv(seq));
    kv.history.assign(tokens.begin(), tokens.begin() + cached);
    kv.set_num_tokens(cached);
    ++admissions;
    return true;
  }
  bool grow(SeqId seq, int64_t n) override { return budget_.grow(seq, n); }
  void computed(SeqId seq, std::span<const int32_t> tokens, int64_t n) override {
    if (!prefix_cache_) return;
    for (int64_t k = block_tokens(); k <= n; k += block_tokens()) cached_.insert(std::vector<int32_t>(tokens.begin(), tokens.begin() + k));
  }
  void release(SeqId seq) override {
    budget_.release(seq);
    ++releases;
  }
  SequenceKv& kv(SeqId seq) override { return budget_.kv(seq); }
  KvUsage usage() const override { return budget_.usage(); }
  size_t num_sequences() const { return budget_.num_sequences(); }

  int admissions = 0, releases = 0;
  bool aligned = false;  // ask for block-aligned prefill chunks (as the paged pool does)

 private:
  BudgetKvPool budget_;
  bool prefix_cache_;
  std::set<std::vector<int32_t>> cached_;
};

struct RequestSpec {
  int prompt_len = 8;
  int64_t max_tokens = 4;
  float temperature = 0.0f;
  uint64_t seed = 0;
  int priority = 0;
  int32_t first_token = 1;  // prompt ids start here (distinct prompts)
  std::vector<int32_t> prompt{};  // when set, the prompt itself (prompt_len and first_token unused)
  std::vector<int32_t> stop_token_ids{};
  bool ignore_eos = false;
};

inline std::unique_ptr<Sequence> make_sequence(RequestId id, const RequestSpec& s, int n_vocab) {
  auto seq = std::make_unique<Sequence>();
  seq->id = id;
  seq->tokens = s.prompt;
  if (s.prompt.empty())
    for (int i = 0; i < s.prompt_len; ++i) seq->tokens.push_back((s.first_token + i * 7) % n_vocab);
  seq->request.stop_token_ids = s.stop_token_ids;
  seq->request.ignore_eos = s.ignore_eos;
  seq->request.max_tokens = s.max_tokens;
  seq->request.sampling.temperature = s.temperature;
  seq->request.sampling.seed = s.seed;
  seq->request.priority = s.priority;
  return seq;
}

// Drives a Scheduler with the FakeBackend the way the Engine does, recording what happened.
struct Finished {
  std::vector<int32_t> output;
  FinishReason reason = FinishReason::kNone;
  RequestUsage usage;
};

class Driver {
 public:
  Driver(SchedulerConfig config, KvPool& pool, int32_t eos = -1) : pool_(pool), sched_(config, pool, eos) {}
  Scheduler& scheduler() { return sched_; }
  FakeBackend& backend() { return backend_; }
  std::map<RequestId, Finished> finished;
  std::vector<ScheduledBatch> history;  // entries' pointers are not kept valid

  void add(RequestId id, const RequestSpec& s) { sched_.add(make_sequence(id, s, backend_.n_vocab())); }
  // One step; returns the plan (pointers valid only inside `check`).
  template <typename Check>
  bool step(Check check) {
    ScheduledBatch batch = sched_.schedule();
    check(batch);
    if (batch.empty()) return false;
    const ForwardOutput out = backend_.forward(build_forward_batch(batch, pool_));
    std::vector<SampledToken> sampled = sample_batch(batch, out);
    for (SequenceUpdate& u : sched_.update(batch, sampled)) {
      if (!u.owned) continue;
      Finished& f = finished[u.owned->id];
      f.output.assign(u.owned->tokens.begin() + u.owned->num_prompt_tokens, u.owned->tokens.end());
      f.reason = u.finish;
      f.usage = u.owned->usage;
    }
    for (auto& e : batch.entries) e.seq = nullptr;
    history.push_back(std::move(batch));
    return true;
  }
  bool step() {
    return step([](const ScheduledBatch&) {});
  }
  void run_to_end(int max_steps = 100000) {
    for (int i = 0; i < max_steps && !sched_.empty(); ++i) ASSERT_TRUE(step()) << "no progress at step " << i;
    ASSERT_TRUE(sched_.empty());
  }

 private:
  KvPool& pool_;
  FakeBackend backend_;
  Scheduler sched_;
};

// Output of one request run alone with an ample pool.
inline Finished run_alone(const RequestSpec& s, int32_t eos = -1, int64_t max_model_len = 100000) {
  FakePool pool(100000, 16);
  Driver d(SchedulerConfig{.max_num_seqs = 1, .max_num_batched_tokens = 100000, .max_model_len = max_model_len}, pool, eos);
  d.add(1, s);
  d.run_to_end();
  return d.finished.at(1);
}

}  // namespace ds4::test
