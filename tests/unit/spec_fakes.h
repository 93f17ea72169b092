// Test doubles for speculative decoding without a model: SpecFakeBackend's logits are a hash of the
// sequence's whole history (any wrongly kept, skipped or repeated token changes everything after
// it), its final state is that hash, and rollback() truncates the history (only right after a
// forward that fed the sequence speculatively, like a real backend). SpecFakeDraft plays the MTP:
// from a paired (state, token) it forms the history hash a next-token pairing implies and returns
// the target's logits plus noise of a chosen size (0: drafts as good as the target). Also a KvPool
// over SpecFakeKv states and the exact distribution of the target's sampled continuations.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "engine/draft_model.h"
#include "engine/forward.h"
#include "engine/sampler.h"
#include "scheduler/budget_kv_pool.h"

namespace ds4::test {

inline uint64_t spec_mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

constexpr uint64_t kHistoryRoot = 0x1234;
inline uint64_t extend_hash(uint64_t h, int32_t token) { return spec_mix(h ^ static_cast<uint64_t>(token)); }
inline uint64_t history_hash(std::span<const int32_t> history) {
  uint64_t h = kHistoryRoot;
  for (int32_t t : history) h = extend_hash(h, t);
  return h;
}

// Target logits after a history with this hash: values in [0, spread).
inline void target_logits(uint64_t h, int n_vocab, float spread, float* out) {
  for (int v = 0; v < n_vocab; ++v) out[v] = static_cast<float>(spec_mix(h + v) >> 40) * 0x1.0p-24f * spread;
}

// A 64-bit hash as 4 floats of 16 bits each (exact in f32), the fakes' hidden state.
constexpr int64_t kFakeStateWidth = 4;
inline void put_hash(uint64_t h, float* s) {
  for (int i = 0; i < 4; ++i) s[i] = static_cast<float>((h >> (16 * i)) & 0xffff);
}
inline uint64_t get_hash(const float* s) {
  uint64_t h = 0;
  for (int i = 0; i < 4; ++i) h |= static_cast<uint64_t>(s[i]) << (16 * i);
  return h;
}

class SpecFakeKv final : public SequenceKv {
 public:
  std::vector<int32_t> history;
  int64_t reserved = 0;
  int64_t num_tokens() const override { return static_cast<int64_t>(history.size()); }
  void set_num_tokens(int64_t n) override {
    if (n > num_tokens()) std::abort();
    history.resize(n);
  }
  bool reserve(int64_t n) override {
    reserved = std::max(reserved, n);
    return true;
  }
  float* raw_row(int, int64_t) override { std::abort(); }
  float* comp_row(int, int64_t) override { std::abort(); }
  float* index_row(int, int64_t) override { std::abort(); }
  float* frontier_kv(int, bool) override { std::abort(); }
  float* frontier_score(int, bool) override { std::abort(); }
};

class SpecFakeBackend final : public Backend {
 public:
  SpecFakeBackend(int n_vocab, float spread = 8.0f) : n_vocab_(n_vocab), spread_(spread) {}
  int n_vocab() const { return n_vocab_; }
  int64_t rows_fed = 0, speculative_rows = 0, rollbacks = 0;

  ForwardOutput forward(const ForwardBatch& batch) override {
    speculative_.clear();
    ForwardOutput out;
    out.n_vocab = n_vocab_;
    for (const SequenceInput& in : batch.sequences) {
      auto* kv = dynamic_cast<SpecFakeKv*>(in.kv);
      if (!kv || in.tokens.empty() || kv->reserved < kv->num_tokens() + static_cast<int64_t>(in.tokens.size())) std::abort();
      if (in.speculative) speculative_[kv] = {kv->num_tokens(), kv->num_tokens() + static_cast<int64_t>(in.tokens.size())};
      out.first_row.push_back(static_cast<int64_t>(out.logits.size()) / n_vocab_);
      for (size_t i = 0; i < in.tokens.size(); ++i) {
        kv->history.push_back(in.tokens[i]);
        if (!in.all_logits && i + 1 != in.tokens.size()) continue;
        const uint64_t h = history_hash(kv->history);
        out.logits.resize(out.logits.size() + n_vocab_);
        target_logits(h, n_vocab_, spread_, out.logits.data() + out.logits.size() - n_vocab_);
        out.final_states.resize(out.final_states.size() + kFakeStateWidth);
        put_hash(h, out.final_states.data() + out.final_states.size() - kFakeStateWidth);
      }
      out.n_rows.push_back(static_cast<int64_t>(out.logits.size()) / n_vocab_ - out.first_row.back());
      rows_fed += static_cast<int64_t>(in.tokens.size());
      if (in.speculative) speculative_rows += static_cast<int64_t>(in.tokens.size());
    }
    return out;
  }
  bool supports_rollback() const override { return true; }
  void rollback(SequenceKv& kv, int64_t n) override {
    const auto it = speculative_.find(&kv);
    if (it == speculative_.end() || n < it->second.first || n > it->second.second || kv.num_tokens() != it->second.second)
      std::abort();
    kv.set_num_tokens(n);
    speculative_.erase(it);
    ++rollbacks;
  }

 private:
  int n_vocab_;
  float spread_;
  std::map<const SequenceKv*, std::pair<int64_t, int64_t>> speculative_;
};

// The fake MTP: state = history hash; input (h, t) -> hash extended by t, logits = target's there
// plus noise * uniform noise per token.
class SpecFakeDraft final : public DraftModel {
 public:
  SpecFakeDraft(int n_vocab, float spread, float noise) : n_vocab_(n_vocab), spread_(spread), noise_(noise) {}
  int64_t calls = 0, rows = 0, restarts = 0;
  int64_t state_width() const override { return kFakeStateWidth; }
  std::unique_ptr<SequenceKv> new_state(int) override { return std::make_unique<SpecFakeKv>(); }
  void restart(SequenceKv& state, int64_t pos) override {
    auto& kv = dynamic_cast<SpecFakeKv&>(state);
    kv.history.assign(pos, -1);  // positions before pos hold nothing
    ++restarts;
  }
  ForwardOutput forward(std::span<const DraftRun> runs) override {
    ++calls;
    ForwardOutput out;
    out.n_vocab = n_vocab_;
    for (const DraftRun& r : runs) {
      auto& kv = dynamic_cast<SpecFakeKv&>(*r.kv);
      if (r.tokens.empty() || r.prev_states.size() != r.tokens.size() * kFakeStateWidth) std::abort();
      uint64_t h = 0;
      for (size_t j = 0; j < r.tokens.size(); ++j) {
        h = extend_hash(get_hash(&r.prev_states[j * kFakeStateWidth]), r.tokens[j]);
        kv.history.push_back(r.tokens[j]);
      }
      rows += static_cast<int64_t>(r.tokens.size());
      out.first_row.push_back(static_cast<int64_t>(out.n_rows.size()));
      out.n_rows.push_back(1);
      const size_t base = out.logits.size();
      out.logits.resize(base + n_vocab_);
      target_logits(h, n_vocab_, spread_, &out.logits[base]);
      for (int v = 0; v < n_vocab_; ++v) out.logits[base + v] += noise_ * static_cast<float>(spec_mix(h ^ (0xabcdull + v)) >> 40) * 0x1.0p-24f;
      out.final_states.resize(out.final_states.size() + kFakeStateWidth);
      put_hash(h, out.final_states.data() + out.final_states.size() - kFakeStateWidth);
    }
    return out;
  }

 private:
  int n_vocab_;
  float spread_, noise_;
};

// A BudgetKvPool of SpecFakeKv states.
inline std::unique_ptr<BudgetKvPool> spec_fake_pool(int64_t blocks, int64_t block_tokens, int max_sequences = 100000) {
  return std::make_unique<BudgetKvPool>(blocks, block_tokens, max_sequences, [] { return std::make_unique<SpecFakeKv>(); });
}

// P(the next n tokens after `prefix` are exactly `tail`) under the target sampler with params sp:
// all continuations of length n with their probabilities.
inline void target_continuations(std::vector<int32_t>& prefix, int n, int n_vocab, float spread, const SamplingParams& sp,
                                 double prob, std::vector<int32_t>& tail, std::map<std::vector<int32_t>, double>& out) {
  if (n == 0) {
    out[tail] += prob;
    return;
  }
  std::vector<float> logits(n_vocab);
  target_logits(history_hash(prefix), n_vocab, spread, logits.data());
  const TokenDistribution d = sampling_distribution(logits, sp);
  for (size_t i = 0; i < d.ids.size(); ++i) {
    prefix.push_back(d.ids[i]);
    tail.push_back(d.ids[i]);
    target_continuations(prefix, n - 1, n_vocab, spread, sp, prob * d.weights[i] / d.total, tail, out);
    tail.pop_back();
    prefix.pop_back();
  }
}

}  // namespace ds4::test
