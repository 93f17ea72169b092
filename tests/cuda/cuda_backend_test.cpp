// CudaBackend end to end on the demo model (build/models/tiny-q2.gguf; $DS4_BINARY_DIR/models on
// the GPU machine): logits equal the CPU reference's under teacher forcing over 512 positions fed
// as prefill chunks and single-token decode steps (tolerances below, with and without the KV
// quantisation), greedy generation gives the CPU's tokens for 256 steps, and every sequence of
// ragged batches of 1 to 64 sequences at different positions gets bit-identical logits to
// running alone (batch invariance).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "engine/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/model.h"
#include "tests/cuda/gpu_test_util.h"

namespace ds4 {
namespace {

const Model& demo_model() {
  static std::unique_ptr<Model> model = load_model(test::binary_dir() + "/models/tiny-q2.gguf");
  return *model;
}

std::vector<int32_t> random_tokens(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % 128000);
  t[0] = 0;  // BOS
  return t;
}

// Logits of every position, feeding the tokens in the given chunks.
std::vector<float> run_chunks(Backend& backend, SequenceKv& kv, const std::vector<int32_t>& tokens, const std::vector<int>& chunks) {
  std::vector<float> logits;
  size_t pos = 0;
  for (int len : chunks) {
    ForwardBatch b;
    b.sequences.push_back({&kv, std::span<const int32_t>(tokens).subspan(pos, len), true});
    const ForwardOutput out = backend.forward(b);
    logits.insert(logits.end(), out.logits.begin(), out.logits.end());
    pos += len;
  }
  return logits;
}

struct RowStats {
  double max_rel = 0.0;   // max over rows of max|gpu − cpu| / max|cpu|
  int worst_row = -1;
  int argmax_same = 0;
};

RowStats compare_rows(const std::vector<float>& gpu, const std::vector<float>& cpu, int64_t vocab) {
  RowStats s;
  const int64_t rows = static_cast<int64_t>(cpu.size()) / vocab;
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<float> g(gpu.begin() + r * vocab, gpu.begin() + (r + 1) * vocab);
    const std::vector<float> c(cpu.begin() + r * vocab, cpu.begin() + (r + 1) * vocab);
    const double e = test::max_rel_error(g, c);
    if (e > s.max_rel) s.max_rel = e, s.worst_row = static_cast<int>(r);
    s.argmax_same += std::max_element(g.begin(), g.end()) - g.begin() == std::max_element(c.begin(), c.end()) - c.begin();
  }
  return s;
}

void teacher_forcing(bool quantize_kv, double tolerance, int min_argmax_same) {
  const Model& m = demo_model();
  const int n = 512;
  const auto tokens = random_tokens(n, 21);
  CpuBackend cpu(m.config, m.weights, ForwardOptions{.quantize_kv = quantize_kv});
  ContiguousKv cpu_kv(m.config);
  const auto ref = run_chunks(cpu, cpu_kv, tokens, {n});
  CudaBackendOptions o;
  o.forward.quantize_kv = quantize_kv;
  CudaBackend gpu(m.config, m.weights, o);
  auto kv = gpu.new_sequence();
  std::vector<int> chunks = {200};
  for (int i = 0; i < 56; ++i) chunks.push_back(1);  // decode steps across windows and the indexer threshold
  chunks.push_back(256);
  const auto got = run_chunks(gpu, *kv, tokens, chunks);
  const RowStats s = compare_rows(got, ref, m.config.n_vocab);
  std::printf("[ gpu ] teacher forcing %d positions (quantize_kv %d): max row rel. error %.3g at position %d, argmax agrees at %d\n",
              n, quantize_kv, s.max_rel, s.worst_row, s.argmax_same);
  EXPECT_LT(s.max_rel, tolerance);
  EXPECT_GE(s.argmax_same, min_argmax_same);
}

TEST(CudaBackend, TeacherForcingMatchesCpuWithoutKvQuantisation) {
  DS4_REQUIRE_GPU();
  teacher_forcing(false, 1e-3, 510);
}

TEST(CudaBackend, TeacherForcingMatchesCpuWithKvQuantisation) {
  DS4_REQUIRE_GPU();
  teacher_forcing(true, 5e-2, 500);
}

// Greedy tokens after a prompt, one decode step at a time.
std::vector<int32_t> greedy(Backend& backend, SequenceKv& kv, std::vector<int32_t> prompt, int steps, int64_t vocab) {
  std::vector<int32_t> out;
  for (int i = 0; i < steps; ++i) {
    ForwardBatch b;
    b.sequences.push_back({&kv, std::span<const int32_t>(prompt), false});
    const ForwardOutput o = backend.forward(b);
    const float* row = o.row(0);
    const int32_t next = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
    out.push_back(next);
    prompt = {next};
  }
  return out;
}

TEST(CudaBackend, GreedyGenerationMatchesCpuFor256Steps) {
  DS4_REQUIRE_GPU();
  const Model& m = demo_model();
  const auto prompt = random_tokens(16, 22);
  CpuBackend cpu(m.config, m.weights);
  ContiguousKv cpu_kv(m.config);
  const auto ref = greedy(cpu, cpu_kv, prompt, 256, m.config.n_vocab);
  CudaBackend gpu(m.config, m.weights);
  auto kv = gpu.new_sequence();
  const auto got = greedy(gpu, *kv, prompt, 256, m.config.n_vocab);
  int same = 0;
  while (same < 256 && got[same] == ref[same]) ++same;
  std::printf("[ gpu ] greedy generation: first %d of 256 tokens equal to the CPU's\n", same);
  EXPECT_EQ(same, 256);
}

TEST(CudaBackend, RaggedBatchesAreBitIdenticalToRunningAlone) {
  DS4_REQUIRE_GPU();
  const Model& m = demo_model();
  const int64_t vocab = m.config.n_vocab;
  CudaBackendOptions o;
  o.max_seqs = 80;
  CudaBackend gpu(m.config, m.weights, o);
  for (int n_seqs : {1, 7, 64}) {
    // Step j gives sequence s chunk[s][j] new tokens (0: not in that step's batch).
    std::vector<std::vector<int>> chunk(n_seqs);
    std::vector<std::vector<int32_t>> tokens(n_seqs);
    for (int s = 0; s < n_seqs; ++s) {
      chunk[s] = {1 + (s * 37) % 200, s % 3 == 0 ? 0 : 1, 1 + (s * 11) % 17, 1};
      int total = 0;
      for (int c : chunk[s]) total += c;
      tokens[s] = random_tokens(total, 100 + s);
    }
    std::vector<std::vector<float>> alone(n_seqs), batched(n_seqs);
    for (int s = 0; s < n_seqs; ++s) {
      auto kv = gpu.new_sequence();
      std::vector<int> chunks;
      for (int c : chunk[s]) if (c > 0) chunks.push_back(c);
      alone[s] = run_chunks(gpu, *kv, tokens[s], chunks);
    }
    std::vector<std::unique_ptr<CudaSequenceKv>> kvs;
    for (int s = 0; s < n_seqs; ++s) kvs.push_back(gpu.new_sequence());
    std::vector<size_t> done(n_seqs, 0);
    for (int j = 0; j < 4; ++j) {
      ForwardBatch b;
      std::vector<int> members;
      for (int s = n_seqs - 1; s >= 0; --s) {  // reverse order: positions in the batch differ from the ids
        if (chunk[s][j] == 0) continue;
        b.sequences.push_back({kvs[s].get(), std::span<const int32_t>(tokens[s]).subspan(done[s], chunk[s][j]), true});
        members.push_back(s);
        done[s] += chunk[s][j];
      }
      const ForwardOutput out = gpu.forward(b);
      for (size_t i = 0; i < members.size(); ++i)
        batched[members[i]].insert(batched[members[i]].end(), out.row(i), out.row(i) + out.n_rows[i] * vocab);
    }
    for (int s = 0; s < n_seqs; ++s) {
      ASSERT_EQ(batched[s].size(), alone[s].size());
      ASSERT_EQ(0, std::memcmp(batched[s].data(), alone[s].data(), alone[s].size() * sizeof(float)))
          << n_seqs << " sequences: sequence " << s << " differs from running alone";
    }
    std::printf("[ gpu ] batch of %d sequences: every sequence bit-identical to running alone\n", n_seqs);
  }
}

}  // namespace
}  // namespace ds4
