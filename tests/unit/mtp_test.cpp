// MTP draft module forward (MODEL.md 3.2): shapes and determinism on the demo model, runs of
// several inputs batch-invariant, and a case
// checked by hand: with e_proj = 0, h_proj = I and a block whose outputs are zero, the draft
// logits are output · RMSNorm(v) when every stream of the previous state equals v.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "kernels/quant.h"

namespace ds4 {
namespace {

TEST(Mtp, ShapesAndDeterminismOnDemoModel) {
  auto model = load_model(std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf");
  auto mtp_file = GgufFile::open(std::string(DS4_BINARY_DIR) + "/models/tiny-q2-mtp.gguf");
  const MtpWeights mtp = bind_mtp_weights(*mtp_file, model->config);
  const ModelConfig& c = model->config;
  CpuBackend backend(c, model->weights);
  ContiguousKv kv(c);
  const std::vector<int32_t> prompt{0, 100, 200, 300, 400};
  ForwardBatch b;
  b.sequences.push_back({&kv, prompt, false});
  const ForwardOutput target = backend.forward(b);
  ASSERT_EQ(target.final_states.size(), size_t(c.hc_count) * c.n_embd);

  auto draft = [&](int steps) {
    const ModelConfig mc = mtp_kv_config(c);
    ContiguousKv mkv(mc);
    mkv.restart_raw_window(static_cast<int64_t>(prompt.size()) - 1);
    std::vector<float> state = target.final_states;
    int32_t token = prompt.back();
    std::vector<float> all;
    for (int i = 0; i < steps; ++i) {
      const DraftRun in{&mkv, std::span<const int32_t>(&token, 1), state};
      const ForwardOutput out = backend.forward_mtp(mtp, std::span<const DraftRun>(&in, 1));
      EXPECT_EQ(out.logits.size(), size_t(c.n_vocab));
      EXPECT_EQ(out.final_states.size(), state.size());
      for (float x : out.logits) EXPECT_TRUE(std::isfinite(x));
      all.insert(all.end(), out.logits.begin(), out.logits.end());
      state = out.final_states;
      token = static_cast<int32_t>(std::max_element(out.logits.begin(), out.logits.end()) - out.logits.begin());
    }
    EXPECT_EQ(mkv.num_tokens(), static_cast<int64_t>(prompt.size()) - 1 + steps);
    return all;
  };
  const auto a = draft(3), b2 = draft(3);
  EXPECT_EQ(a, b2);
  // Recursive drafts see their own earlier rows: step 2 differs from step 1.
  EXPECT_NE(std::vector<float>(a.begin(), a.begin() + c.n_vocab),
            std::vector<float>(a.begin() + c.n_vocab, a.begin() + 2 * c.n_vocab));
}

// A run of several inputs in one call, beside another sequence's run, gives bit for bit what the
// inputs give one call at a time (the speculator's catch-up runs rely on it).
TEST(Mtp, RunsAreBatchInvariant) {
  auto model = load_model(std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf");
  auto mtp_file = GgufFile::open(std::string(DS4_BINARY_DIR) + "/models/tiny-q2-mtp.gguf");
  const MtpWeights mtp = bind_mtp_weights(*mtp_file, model->config);
  const ModelConfig& c = model->config;
  CpuBackend backend(c, model->weights);
  const ModelConfig mc = mtp_kv_config(c);
  const int64_t width = int64_t(c.hc_count) * c.n_embd;
  std::vector<float> states(3 * width);
  for (size_t i = 0; i < states.size(); ++i) states[i] = std::sin(0.013f * float(i)) * 2.0f;
  const std::vector<int32_t> tokens{7, 300, 4242};

  ContiguousKv one(mc), other(mc), batched(mc), other_batched(mc);
  for (ContiguousKv* k : {&one, &other, &batched, &other_batched}) k->restart_raw_window(40);
  std::vector<float> last_logits, last_state;
  for (int j = 0; j < 3; ++j) {
    const DraftRun in{&one, std::span<const int32_t>(&tokens[j], 1), std::span<const float>(&states[j * width], width)};
    const ForwardOutput out = backend.forward_mtp(mtp, std::span<const DraftRun>(&in, 1));
    last_logits = out.logits;
    last_state = out.final_states;
  }
  const DraftRun solo{&other, std::span<const int32_t>(&tokens[1], 1), std::span<const float>(&states[0], width)};
  const ForwardOutput other_out = backend.forward_mtp(mtp, std::span<const DraftRun>(&solo, 1));

  const DraftRun runs[2] = {{&other_batched, std::span<const int32_t>(&tokens[1], 1), std::span<const float>(&states[0], width)},
                            {&batched, tokens, states}};
  const ForwardOutput out = backend.forward_mtp(mtp, runs);
  ASSERT_EQ(out.n_rows, (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(std::vector<float>(out.row(1), out.row(1) + c.n_vocab), last_logits);
  EXPECT_EQ(std::vector<float>(out.final_states.begin() + width, out.final_states.end()), last_state);
  EXPECT_EQ(std::vector<float>(out.row(0), out.row(0) + c.n_vocab), other_out.logits);
  EXPECT_EQ(batched.num_tokens(), 43);
  for (int64_t p = 40; p < 43; ++p)
    for (int d = 0; d < c.head_dim; ++d) ASSERT_EQ(batched.raw_row(0, p)[d], one.raw_row(0, p)[d]) << p;
}

// In-memory F32 tensors for the hand-checked case.
struct Tensors {
  std::vector<std::vector<float>> store;
  TensorView make(std::vector<uint64_t> dims, float fill) {
    uint64_t n = 1;
    for (auto d : dims) n *= d;
    store.emplace_back(n, fill);
    TensorView v;
    v.data = reinterpret_cast<const uint8_t*>(store.back().data());
    v.type = GgmlType::F32;
    v.ne0 = dims[0];
    v.ne1 = dims.size() > 1 ? dims[1] : 1;
    v.ne2 = dims.size() > 2 ? dims[2] : 1;
    v.row_bytes = v.ne0 * 4;
    return v;
  }
  float* last() { return store.back().data(); }
};

TEST(Mtp, HandCheckedIdentityBlock) {
  ModelConfig c = preset_tiny();
  c.n_vocab = 64;
  c.n_hash_layers = 0;
  Tensors t;
  t.store.reserve(64);
  Weights w;
  w.token_embd = t.make({uint64_t(c.n_embd), uint64_t(c.n_vocab)}, 0.3f);
  w.output = t.make({uint64_t(c.n_embd), uint64_t(c.n_vocab)}, 0.0f);
  for (size_t i = 0; i < t.store.back().size(); ++i) t.last()[i] = std::sin(0.37f * float(i));
  const std::vector<float>& output = t.store.back();
  const uint64_t E = c.n_embd, H = c.hc_count * c.n_embd, mix = c.hc_mix_dim();
  MtpWeights m;
  m.e_proj = t.make({E, E}, 0.0f);
  m.h_proj = t.make({E, E}, 0.0f);
  for (uint64_t i = 0; i < E; ++i) t.last()[i * E + i] = 1.0f;
  m.enorm = t.make({E}, 1.0f);
  m.hnorm = t.make({E}, 1.0f);
  m.norm = t.make({E}, 1.0f);
  m.hc_head_fn = t.make({H, uint64_t(c.hc_count)}, 0.0f);
  m.hc_head_scale = t.make({1}, 1.0f);
  m.hc_head_base = t.make({uint64_t(c.hc_count)}, 0.5f);
  LayerWeights& b = m.block;
  for (auto* v : {&b.hc_attn_fn, &b.hc_ffn_fn}) *v = t.make({H, mix}, 0.0f);
  for (auto* v : {&b.hc_attn_scale, &b.hc_ffn_scale}) *v = t.make({3}, 1.0f);
  for (auto* v : {&b.hc_attn_base, &b.hc_ffn_base}) *v = t.make({mix}, 0.0f);
  b.attn_norm = t.make({E}, 1.0f);
  b.ffn_norm = t.make({E}, 1.0f);
  b.attn_q_a = t.make({E, uint64_t(c.q_lora_rank)}, 0.01f);
  b.attn_q_a_norm = t.make({uint64_t(c.q_lora_rank)}, 1.0f);
  b.attn_q_b = t.make({uint64_t(c.q_lora_rank), uint64_t(c.q_dim())}, 0.01f);
  b.attn_kv = t.make({E, uint64_t(c.head_dim)}, 0.01f);
  b.attn_kv_a_norm = t.make({uint64_t(c.head_dim)}, 1.0f);
  b.attn_sinks = t.make({uint64_t(c.n_head)}, 0.0f);
  b.attn_output_a = t.make({uint64_t(c.o_group_width()), uint64_t(c.o_groups * c.o_lora_rank)}, 0.01f);
  b.attn_output_b = t.make({uint64_t(c.o_groups * c.o_lora_rank), E}, 0.0f);  // attention adds nothing
  b.ffn_gate_inp = t.make({E, uint64_t(c.n_expert)}, 0.01f);
  b.exp_probs_b = t.make({uint64_t(c.n_expert)}, 0.0f);
  const uint64_t F = c.expert_ffn;
  b.ffn_gate_exps = t.make({E, F, uint64_t(c.n_expert)}, 0.01f);
  b.ffn_up_exps = t.make({E, F, uint64_t(c.n_expert)}, 0.01f);
  b.ffn_down_exps = t.make({F, E, uint64_t(c.n_expert)}, 0.0f);  // experts add nothing
  b.ffn_gate_shexp = t.make({E, F}, 0.01f);
  b.ffn_up_shexp = t.make({E, F}, 0.01f);
  b.ffn_down_shexp = t.make({F, E}, 0.0f);

  CpuBackend backend(c, w);
  const ModelConfig mc = mtp_kv_config(c);
  ContiguousKv kv(mc);
  kv.restart_raw_window(10);
  std::vector<float> v(E), prev(H);
  for (uint64_t d = 0; d < E; ++d) v[d] = std::cos(0.11f * float(d)) + 0.2f;
  for (int s = 0; s < c.hc_count; ++s) std::copy(v.begin(), v.end(), prev.begin() + s * E);
  const int32_t token = 5;
  const DraftRun in{&kv, std::span<const int32_t>(&token, 1), prev};
  const ForwardOutput out = backend.forward_mtp(m, std::span<const DraftRun>(&in, 1));

  // Expected: logits = output · RMSNorm(v)
  double ss = 0;
  for (float x : v) ss += double(x) * x;
  const double inv = 1.0 / std::sqrt(ss / E + c.rms_eps);
  for (int tok = 0; tok < c.n_vocab; ++tok) {
    double expect = 0;
    for (uint64_t d = 0; d < E; ++d) expect += double(output[tok * E + d]) * v[d] * inv;
    EXPECT_NEAR(out.logits[tok], expect, 1e-4 * (1 + std::fabs(expect))) << "token " << tok;
  }
}

}  // namespace
}  // namespace ds4
