// Exact rollback of verified drafts on the demo model (ratio-4 and ratio-128 layers, window 32):
// after a speculative forward of a token plus K drafts of which only the first m are right, the
// verification rows of the right ones equal a plain run's logits bit for bit, and rolling back to
// the m true positions leaves every row of state (raw ring, compressed and indexer rows, both
// compressor frontiers incl. the ratio-4 overlapping half and the ratio-128 window) exactly as a
// run that only ever saw the true tokens; the continuation then agrees bit for bit. Prompts end
// mid-window and drafts cross ratio-4, ratio-128 and 256-token block boundaries; the paged pool
// also publishes and snapshots after a rollback, and a prefix-cache hit there resumes exactly.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "engine/cpu_backend.h"
#include "engine/kv_geometry.h"
#include "engine/kv_state.h"
#include "engine/model.h"
#include "kvcache/kv_cache_manager.h"

namespace ds4 {
namespace {

constexpr int kDrafts = 4;  // K: the speculative forward feeds 1 + K tokens

const Model& demo_model() {
  static std::unique_ptr<Model> model = load_model(std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf");
  return *model;
}

CpuBackend& backend() {
  static CpuBackend b(demo_model().config, demo_model().weights);
  return b;
}

std::vector<int32_t> random_tokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(100 + rng() % 120000);
  return t;
}

std::vector<float> forward(SequenceKv& kv, std::span<const int32_t> tokens, bool all_logits, bool speculative = false) {
  ForwardBatch batch;
  batch.sequences.push_back({&kv, tokens, all_logits, speculative});
  return backend().forward(batch).logits;
}

bool bit_equal(const float* a, const float* b, int64_t n) { return std::memcmp(a, b, size_t(n) * sizeof(float)) == 0; }

// Every row of state a query at the next position can read, and the full compressor frontiers.
// Returns "" when equal, else the first difference.
std::string state_difference(SequenceKv& a, SequenceKv& b) {
  const ModelConfig& c = demo_model().config;
  if (a.num_tokens() != b.num_tokens()) return "num_tokens differ";
  const int64_t n = a.num_tokens();
  for (int il = 0; il < c.n_layer; ++il) {
    const std::string at = "layer " + std::to_string(il) + ": ";
    for (int64_t p = std::max<int64_t>(0, n - c.sliding_window); p < n; ++p)
      if (!bit_equal(a.raw_row(il, p), b.raw_row(il, p), c.head_dim)) return at + "raw row " + std::to_string(p);
    const int ratio = c.compress_ratio(il);
    if (ratio == 0) continue;
    for (int64_t r = 0; r < n / ratio; ++r) {
      if (!bit_equal(a.comp_row(il, r), b.comp_row(il, r), c.head_dim)) return at + "compressed row " + std::to_string(r);
      if (ratio == 4 && !bit_equal(a.index_row(il, r), b.index_row(il, r), c.indexer_dim)) return at + "indexer row " + std::to_string(r);
    }
    for (bool indexer : {false, true}) {
      if (indexer && ratio != 4) continue;
      const int64_t size = int64_t(frontier_rows(ratio)) * frontier_width(ratio, indexer ? c.indexer_dim : c.head_dim);
      if (!bit_equal(a.frontier_kv(il, indexer), b.frontier_kv(il, indexer), size)) return at + "frontier kv";
      if (!bit_equal(a.frontier_score(il, indexer), b.frontier_score(il, indexer), size)) return at + "frontier score";
    }
  }
  return "";
}

// Drafts for the tokens after truth[0]: the first m right, the rest wrong.
std::vector<int32_t> fed_tokens(const std::vector<int32_t>& truth, int m) {
  std::vector<int32_t> fed(truth.begin(), truth.begin() + 1 + kDrafts);
  for (int j = m; j <= kDrafts; ++j) fed[j] = truth[j] + 1;
  return fed;
}

// One prompt length: for each m, a speculative forward on a copy of the prefilled state, rollback to
// m true positions, state compared with the plain run's, then the continuation compared.
void check_prompt_length(int prompt_len, uint32_t seed) {
  SCOPED_TRACE("prompt length " + std::to_string(prompt_len));
  const ModelConfig& c = demo_model().config;
  const std::vector<int32_t> prompt = random_tokens(prompt_len, seed);
  const std::vector<int32_t> truth = random_tokens(kDrafts + 3, seed + 1000);  // what follows the prompt
  ContiguousKv plain(c);
  forward(plain, prompt, false);
  const ContiguousKv prefilled = plain;
  // The plain run, one token at a time: logits after each and the state after each count.
  std::vector<std::vector<float>> plain_logits;
  std::vector<ContiguousKv> plain_states;
  for (size_t i = 0; i < truth.size(); ++i) {
    plain_logits.push_back(forward(plain, std::span<const int32_t>(&truth[i], 1), false));
    plain_states.push_back(plain);
  }
  for (int m = 1; m <= kDrafts + 1; ++m) {
    SCOPED_TRACE("true positions " + std::to_string(m));
    ContiguousKv spec = prefilled;
    const std::vector<int32_t> fed = fed_tokens(truth, m);
    const std::vector<float> rows = forward(spec, fed, true, true);
    for (int j = 0; j < m; ++j)
      ASSERT_TRUE(bit_equal(&rows[size_t(j) * c.n_vocab], plain_logits[j].data(), c.n_vocab)) << "verification row " << j;
    backend().rollback(spec, prompt_len + m);
    ASSERT_EQ(state_difference(spec, plain_states[m - 1]), "");
    for (size_t i = m; i < size_t(m) + 2; ++i)  // the state is compared already: two tokens suffice
      ASSERT_TRUE(bit_equal(forward(spec, std::span<const int32_t>(&truth[i], 1), false).data(), plain_logits[i].data(), c.n_vocab))
          << "continuation token " << i;
  }
}

TEST(MtpRollback, ContiguousStateIsExactAfterEveryAcceptanceLength) {
  // Mid ratio-4 window (29 = 4*7+1, 62 = 4*15+2), last token before a ratio-4 emission (31, 127),
  // drafts across the first ratio-128 window end (127) and past it (130), all mid raw window.
  for (int len : {29, 31, 62, 127, 130}) check_prompt_length(len, uint32_t(len));
}

TEST(MtpRollback, RollbackWithoutSpeculativeForwardIsRefused) {
  ContiguousKv kv(demo_model().config);
  const std::vector<int32_t> t = random_tokens(5, 3);
  forward(kv, t, false);  // not speculative
  EXPECT_DEATH(backend().rollback(kv, 3), "not speculative");
}

// The paged pool: drafts across the 256-token block boundary rolled back below it, then the
// sequence continues, publishes its first block with a boundary snapshot, and a new sequence hits
// that prefix and resumes exactly.
TEST(MtpRollback, PagedPoolAcrossBlockBoundaryThenPrefixHit) {
  const ModelConfig& c = demo_model().config;
  const int64_t bt = kKvBlockTokens;
  KvCacheManager pool(layout_kv_pool(kv_geometry(c), KvLayout::kF32, 8, 4, 4));
  std::vector<int32_t> tokens = random_tokens(int(bt) + 8, 77);
  const int prompt_len = int(bt) - 2;  // 254: drafts at 255..258 cross the boundary at 256
  ASSERT_EQ(pool.add_sequence(1, tokens, 0, prompt_len), KvStatus::kOk);
  SequenceKv& kv = pool.sequence_kv(1);
  forward(kv, std::span<const int32_t>(tokens).subspan(0, prompt_len), false);
  pool.publish(1, tokens);
  // Feed tokens[254] + 4 drafts of which only the first is right: 2 true positions (254, 255).
  ASSERT_EQ(pool.allocate(1, prompt_len + 1 + kDrafts), KvStatus::kOk);
  std::vector<int32_t> fed(tokens.begin() + prompt_len, tokens.begin() + prompt_len + 1 + kDrafts);
  for (int j = 2; j <= kDrafts; ++j) fed[j] += 1;
  forward(kv, fed, true, true);
  backend().rollback(kv, prompt_len + 2);
  pool.publish(1, tokens);  // 256 positions: block 0 published with a boundary snapshot
  ASSERT_EQ(kv.num_tokens(), bt);
  const std::vector<float> after = forward(kv, std::span<const int32_t>(tokens).subspan(bt, 8), true);

  ContiguousKv plain(c);
  forward(plain, std::span<const int32_t>(tokens).subspan(0, bt), false);
  EXPECT_TRUE(bit_equal(after.data(), forward(plain, std::span<const int32_t>(tokens).subspan(bt, 8), true).data(),
                        int64_t(after.size())));

  ASSERT_EQ(pool.find_cached_prefix(tokens), bt);
  ASSERT_EQ(pool.add_sequence(2, tokens, bt, int64_t(tokens.size())), KvStatus::kOk);
  const std::vector<float> resumed = forward(pool.sequence_kv(2), std::span<const int32_t>(tokens).subspan(bt, 8), true);
  EXPECT_TRUE(bit_equal(resumed.data(), after.data(), int64_t(after.size())));
  EXPECT_EQ(pool.check_invariants(), "");
}

}  // namespace
}  // namespace ds4
