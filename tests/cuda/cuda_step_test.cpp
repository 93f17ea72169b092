// CudaBackend's step fast paths on the demo model (build/models/tiny-q2.gguf): three sequences
// prefilled (one prompt each, different lengths) then decoded for 300 steps (crossing compressed
// windows and the indexer's top-k threshold of the tiny model), with KV quantisation on and off,
// by (a) the op-by-op reference path, (b) fused ops launched directly and (c) fused ops with
// CUDA graphs captured per step shape and replayed. (c) must equal (b) bit for bit (the padded
// graph plan computes exactly what the compact one does); (b) must stay within 1e-5 of (a) per
// logit row (the fused hyper-connection mix sums in another order). Also checks that graphs were
// replayed, not re-captured every step.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "engine/cuda/cuda_backend.h"
#include "engine/model.h"
#include "tests/cuda/gpu_test_util.h"

namespace ds4 {
namespace {

const Model& demo_model() {
  static std::unique_ptr<Model> model = load_model(test::binary_dir() + "/models/tiny-q2.gguf");
  return *model;
}

struct Run {
  std::vector<float> logits;  // every step's logit rows, in order
  StepGraphStats stats;
};

// Prefill of 3 prompts, then greedy decode of `steps` steps (feeding token (argmax + s) % vocab
// so all modes see the same inputs even if they diverged).
Run run_mode(bool fused, bool graphs, bool quantize_kv, int steps) {
  const Model& m = demo_model();
  CudaBackendOptions o;
  o.forward.quantize_kv = quantize_kv;
  o.max_seqs = 3;
  o.fused_ops = fused, o.cuda_graphs = graphs;
  CudaBackend gpu(m.config, m.weights, o);
  std::vector<std::unique_ptr<CudaSequenceKv>> kv;
  std::vector<std::vector<int32_t>> prompt(3);
  std::mt19937 rng(5);
  const int lengths[3] = {37, 1, 130};
  ForwardBatch b;
  for (int s = 0; s < 3; ++s) {
    kv.push_back(gpu.new_sequence());
    prompt[s].resize(lengths[s]);
    for (auto& t : prompt[s]) t = static_cast<int32_t>(rng() % 128000);
    b.sequences.push_back({kv[s].get(), prompt[s], false});
  }
  Run run;
  ForwardOutput out = gpu.forward(b);
  run.logits = out.logits;
  std::vector<std::vector<int32_t>> next(3, std::vector<int32_t>(1));
  const int64_t V = out.n_vocab;
  for (int step = 0; step < steps; ++step) {
    ForwardBatch d;
    for (int s = 0; s < 3; ++s) {
      const float* row = out.logits.data() + out.first_row[s] * V;
      next[s][0] = static_cast<int32_t>((std::max_element(row, row + V) - row + s) % V);
      d.sequences.push_back({kv[s].get(), next[s], false});
    }
    out = gpu.forward(d);
    run.logits.insert(run.logits.end(), out.logits.begin(), out.logits.end());
  }
  run.stats = gpu.step_stats();
  std::printf("[ gpu ] mode fused=%d graphs=%d quantize_kv=%d: %d steps done\n", fused, graphs, quantize_kv, steps);
  std::fflush(stdout);
  return run;
}

void check_modes(bool quantize_kv) {
  const int steps = 300;
  const Run ref = run_mode(false, false, quantize_kv, steps);
  const Run fused = run_mode(true, false, quantize_kv, steps);
  const Run graphs = run_mode(true, true, quantize_kv, steps);
  ASSERT_EQ(graphs.logits.size(), fused.logits.size());
  for (size_t i = 0; i < graphs.logits.size(); ++i)
    ASSERT_EQ(graphs.logits[i], fused.logits[i]) << "graph replay differs from direct launches at logit " << i;
  std::printf("[ gpu ] KV quantisation %s: graphs: %lld captures, %lld replays, %lld direct steps, %lld nodes in the last graph "
              "(%.1f ms to capture + instantiate)\n",
              quantize_kv ? "on" : "off", (long long)graphs.stats.captures, (long long)graphs.stats.replays,
              (long long)graphs.stats.eager_steps, (long long)graphs.stats.last_nodes, graphs.stats.last_capture_ms);
  EXPECT_EQ(graphs.stats.eager_steps, 1);  // the prefill
  EXPECT_EQ(graphs.stats.captures + graphs.stats.replays, steps);
  EXPECT_LT(graphs.stats.captures, 12) << "step shapes should repeat (bucketed plan)";
  if (quantize_kv) return;  // with the FP8/FP4 round trips a last-bit change may flip a code (GPU-CHECKS.md)
  const int64_t V = demo_model().config.n_vocab, rows = static_cast<int64_t>(ref.logits.size()) / V;
  double worst = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const std::vector<float> a(fused.logits.begin() + r * V, fused.logits.begin() + (r + 1) * V);
    const std::vector<float> b(ref.logits.begin() + r * V, ref.logits.begin() + (r + 1) * V);
    worst = std::max(worst, test::max_rel_error(a, b));
  }
  std::printf("[ gpu ] fused vs op-by-op: max row rel. error %.3g over %lld rows\n", worst, (long long)rows);
  EXPECT_LT(worst, 1e-5);
}

TEST(CudaStep, FusedOpsAndGraphsWithoutKvQuantisation) {
  DS4_REQUIRE_GPU();
  check_modes(false);
}

TEST(CudaStep, FusedOpsAndGraphsWithKvQuantisation) {
  DS4_REQUIRE_GPU();
  check_modes(true);
}

}  // namespace
}  // namespace ds4
