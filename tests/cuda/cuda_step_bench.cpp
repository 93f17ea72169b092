// cuda_step_bench: what the step's fast paths buy on one GPU. Part 1 times, at the full model's
// shapes, each chain of small ops against the fused kernel that replaces it (fused_ops.h), both
// launched back to back (mean of 200) and alone (median of 50, event to event). Part 2 runs the
// whole model (synthetic full-size q2 in GPU memory, or --preset tiny|small for a quick look):
// B sequences prefilled once, then decode steps with the op-by-op path, with fused ops, and with
// fused ops + CUDA graphs, printing step times, graph nodes (kernel launches) per layer and the
// capture cost. Measurements only (no assertions); docs/PERFORMANCE.md records its runs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/model_config.h"
#include "engine/model_layout.h"
#include "engine/rope.h"
#include "kernels/cuda/fused_ops.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/ops.h"
#include "kernels/quant.h"
#include "tests/cuda/gpu_test_util.h"

namespace ds4 {
namespace {

using test::DeviceArray;
using Clock = std::chrono::steady_clock;

struct Times {
  double stream_us = 0, alone_us = 0;
};

template <typename Fn>
Times time_fn(Fn fn) {
  cudaEvent_t a, b;
  DS4_CUDA_CHECK(cudaEventCreate(&a));
  DS4_CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 5; ++i) fn();
  Times t;
  const int reps = 200;
  DS4_CUDA_CHECK(cudaEventRecord(a));
  for (int i = 0; i < reps; ++i) fn();
  DS4_CUDA_CHECK(cudaEventRecord(b));
  DS4_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  DS4_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  t.stream_us = 1000.0 * ms / reps;
  std::vector<float> v;
  for (int i = 0; i < 50; ++i) {
    DS4_CUDA_CHECK(cudaDeviceSynchronize());
    DS4_CUDA_CHECK(cudaEventRecord(a));
    fn();
    DS4_CUDA_CHECK(cudaEventRecord(b));
    DS4_CUDA_CHECK(cudaEventSynchronize(b));
    DS4_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    v.push_back(ms);
  }
  std::sort(v.begin(), v.end());
  t.alone_us = 1000.0 * v[v.size() / 2];
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return t;
}

void row(const char* what, int64_t T, int chain_launches, Times chain, Times fused) {
  std::printf("| %-34s | %3lld | %d → 1-2 | %7.1f | %7.1f | %7.1f | %7.1f |\n", what, (long long)T, chain_launches, chain.stream_us,
              fused.stream_us, chain.alone_us, fused.alone_us);
}

// Part 1: chains vs fused kernels at the full model's shapes.
void bench_kernels(int64_t T) {
  const ModelConfig c = preset_flash();
  const int64_t n = c.n_embd, hc = c.hc_count, hw = hc * n, mixd = c.hc_mix_dim(), hd = c.head_dim, H = c.n_head;
  const RopeFrequencies f = rope_frequencies(c, true);
  const int n_pairs = static_cast<int>(f.freq.size());
  std::vector<int32_t> pos_h(T);
  for (int64_t t = 0; t < T; ++t) pos_h[t] = static_cast<int32_t>(4096 + 37 * t);
  DeviceArray<int32_t> pos(pos_h);
  DeviceArray<double> freq(f.freq);
  // Hyper-connection boundary (after an attention sub-layer).
  std::vector<float> fnv = test::random_floats(hw * mixd, 1, 0.05f);
  std::vector<uint8_t> fnb(mixd * hw * 2);
  for (int64_t r = 0; r < mixd; ++r) quantize_row(GgmlType::F16, &fnv[r * hw], &fnb[r * hw * 2], hw);
  DeviceArray<uint8_t> fn(fnb);
  DeviceArray<float> states(test::random_floats(T * hw, 2)), next(T * hw), flat(T * hw), mix(T * mixd), coef(test::random_floats(T * mixd, 3, 0.3f));
  DeviceArray<float> y(test::random_floats(T * n, 4)), x(T * n), normed(T * n), nw(test::random_floats(n, 5));
  DeviceArray<float> scale(std::vector<float>{0.7f, 1.3f, 0.9f}), base(test::random_floats(mixd, 6, 0.5f)), coef2(T * mixd);
  DeviceArray<double> partial(T * cuda::hc_boundary_chunks(hw) * (1 + mixd));
  cuda::MatmulParams mp;
  mp.w = fn.get(), mp.type = GgmlType::F16, mp.n_in = hw, mp.n_out = mixd, mp.row_bytes = hw * 2;
  mp.x = flat.get(), mp.x_stride = hw, mp.y = mix.get(), mp.y_stride = mixd, mp.n_tokens = T;
  cuda::HcCoefParams cp;
  cp.mix = mix.get(), cp.scale = scale.get(), cp.base = base.get(), cp.coef = coef2.get(), cp.n_tokens = T;
  cp.hc = static_cast<int>(hc), cp.sinkhorn_iters = c.hc_sinkhorn_iters, cp.eps = c.hc_eps;
  const Times hc_chain = time_fn([&] {
    cuda::hc_post({coef.get(), states.get(), y.get(), next.get(), T, n, static_cast<int>(hc)}, nullptr);
    cuda::rms_norm({next.get(), hw, flat.get(), hw, nullptr, T, hw, c.rms_eps}, nullptr);
    cuda::matmul(mp, nullptr);
    cuda::hc_coefficients(cp, nullptr);
    cuda::hc_pre({coef2.get(), next.get(), x.get(), T, n, static_cast<int>(hc)}, nullptr);
    cuda::rms_norm({x.get(), n, normed.get(), n, nw.get(), T, n, c.rms_eps}, nullptr);
  });
  cuda::HcBoundaryParams bp;
  bp.prev_coef = coef.get(), bp.states = states.get(), bp.y = y.get(), bp.states_out = next.get();
  bp.fn = fn.get(), bp.fn_type = GgmlType::F16, bp.fn_row_bytes = hw * 2, bp.partial = partial.get();
  bp.n_tokens = T, bp.n_embd = n, bp.hc = static_cast<int>(hc), bp.mix_dim = static_cast<int>(mixd);
  cuda::HcFinishParams fp;
  fp.partial = partial.get(), fp.states = next.get(), fp.scale = scale.get(), fp.base = base.get(), fp.coef = coef2.get();
  fp.norm_weight = nw.get(), fp.normed = normed.get(), fp.n_tokens = T, fp.n_embd = n, fp.hc = static_cast<int>(hc);
  fp.mix_dim = static_cast<int>(mixd), fp.sinkhorn_iters = c.hc_sinkhorn_iters;
  const Times hc_fused = time_fn([&] {
    cuda::hc_boundary(bp, nullptr);
    cuda::hc_finish(fp, nullptr);
  });
  row("hc post + mix + Sinkhorn + pre + norm", T, 6, hc_chain, hc_fused);
  // q heads, KV row.
  DeviceArray<float> q(test::random_floats(T * H * hd, 7)), kv(test::random_floats(T * hd, 8)), rawq(T * hd), kvw(test::random_floats(hd, 9));
  cuda::RopeParams rp;
  rp.x = q.get(), rp.row_stride = hd, rp.width = hd, rp.n_rows = T * H, rp.rows_per_token = H, rp.pos = pos.get();
  rp.freq = freq.get(), rp.n_pairs = n_pairs;
  const Times q_chain = time_fn([&] {
    cuda::rms_norm({q.get(), hd, q.get(), hd, nullptr, T * H, hd, c.rms_eps}, nullptr);
    cuda::rope_tail(rp, nullptr);
  });
  const Times q_fused = time_fn([&] {
    cuda::q_heads_norm_rope({q.get(), T, static_cast<int>(H), static_cast<int>(hd), c.rms_eps, pos.get(), freq.get(), n_pairs},
                            nullptr);
  });
  row("q heads norm + RoPE", T, 2, q_chain, q_fused);
  cuda::RopeParams kr = rp;
  kr.x = kv.get(), kr.n_rows = T, kr.rows_per_token = 1;
  const Times kv_chain = time_fn([&] {
    cuda::rms_norm({kv.get(), hd, kv.get(), hd, kvw.get(), T, hd, c.rms_eps}, nullptr);
    cuda::rope_tail(kr, nullptr);
    cuda::quantize_raw_rows({kv.get(), rawq.get(), T, static_cast<int>(hd), c.nope_dim(), true}, nullptr);
  });
  cuda::KvRowParams kp;
  kp.kv = kv.get(), kp.weight = kvw.get(), kp.rawq = rawq.get(), kp.n_tokens = T, kp.head_dim = static_cast<int>(hd);
  kp.nope_dim = c.nope_dim(), kp.pos = pos.get(), kp.freq = freq.get(), kp.n_pairs = n_pairs;
  const Times kv_fused = time_fn([&] { cuda::kv_norm_rope_quant(kp, nullptr); });
  row("kv norm + RoPE + FP8/f16 store form", T, 3, kv_chain, kv_fused);
  // Indexer query.
  const int64_t ih = c.indexer_heads, id = c.indexer_dim;
  DeviceArray<float> iq(test::random_floats(T * ih * id, 10));
  cuda::RopeParams ir = rp;
  ir.x = iq.get(), ir.row_stride = id, ir.width = id, ir.n_rows = T * ih, ir.rows_per_token = ih;
  const Times iq_chain = time_fn([&] {
    cuda::rope_tail(ir, nullptr);
    cuda::hadamard_fp4_rows(iq.get(), T * ih, static_cast<int>(id), nullptr);
  });
  cuda::IndexerQParams ip;
  ip.q = iq.get(), ip.n_tokens = T, ip.heads = static_cast<int>(ih), ip.dim = static_cast<int>(id), ip.pos = pos.get();
  ip.freq = freq.get(), ip.n_pairs = n_pairs;
  const Times iq_fused = time_fn([&] { cuda::indexer_q_rope_qat(ip, nullptr); });
  row("indexer q RoPE + Hadamard/FP4", T, 2, iq_chain, iq_fused);
  // Router + grouping.
  const int ne = c.n_expert, k = c.n_expert_used;
  DeviceArray<float> logits(test::random_floats(T * ne, 11)), bias(test::random_floats(ne, 12, 0.1f)), rw(T * k);
  DeviceArray<int32_t> ex(T * k), off(ne + 1), tr(T * k), sr(T * k), act(ne), nact(1), counter(std::vector<int32_t>{0});
  cuda::RouterParams r;
  r.logits = logits.get(), r.bias = bias.get(), r.experts = ex.get(), r.weights = rw.get(), r.n_tokens = T, r.n_expert = ne, r.k = k;
  const cuda::MoeGroupParams g{ex.get(), T, k, ne, off.get(), tr.get(), sr.get(), act.get(), nact.get()};
  const Times rg_chain = time_fn([&] {
    cuda::route(r, nullptr);
    cuda::moe_group(g, nullptr);
  });
  const Times rg_fused = time_fn([&] { cuda::route_and_group(r, g, counter.get(), nullptr); });
  row("router top-k + group by expert", T, 2, rg_chain, rg_fused);
}

// Part 2: the whole model in the three step modes.
void bench_model(const std::string& preset, const std::vector<int>& batches, int prompt, int steps) {
  const ModelConfig config = preset_by_name(preset);
  const auto t0 = Clock::now();
  DeviceWeights weights = DeviceWeights::synthesize(config, QuantScheme::kQ2, 1, 0, nullptr);
  std::printf("\nmodel: synthetic %s q2, %.2f GB, generated in %.1f s\n", preset.c_str(), weights.bytes() / 1e9,
              std::chrono::duration<double>(Clock::now() - t0).count());
  CudaBackendOptions o;
  o.max_seqs = *std::max_element(batches.begin(), batches.end());
  o.kv_blocks = int64_t(o.max_seqs) * ((prompt + 4 * steps + 255) / 256 + 1);
  CudaBackend gpu(config, std::move(weights), o);
  std::mt19937 rng(3);
  std::printf("| B | mode | step ms (median) | min | tok/s | captures | replays | nodes/layer | capture ms |\n");
  for (int B : batches) {
    std::vector<std::unique_ptr<CudaSequenceKv>> kv;
    std::vector<std::vector<int32_t>> tok(B);
    ForwardBatch b;
    for (int s = 0; s < B; ++s) {
      kv.push_back(gpu.new_sequence());
      tok[s].resize(prompt);
      for (auto& t : tok[s]) t = static_cast<int32_t>(100 + rng() % 100000);
      b.sequences.push_back({kv[s].get(), tok[s], false});
    }
    gpu.set_step_modes(true, false);
    gpu.forward(b);
    const struct { const char* name; bool fused, graphs; } modes[] = {
        {"op by op", false, false}, {"fused", true, false}, {"fused + graphs", true, true}};
    for (const auto& m : modes) {
      gpu.set_step_modes(m.fused, m.graphs);
      const StepGraphStats before = gpu.step_stats();
      std::vector<double> ms;
      for (int i = 0; i < steps; ++i) {
        ForwardBatch d;
        for (int s = 0; s < B; ++s) {
          tok[s].assign(1, static_cast<int32_t>(100 + rng() % 100000));
          d.sequences.push_back({kv[s].get(), tok[s], false});
        }
        const auto t1 = Clock::now();
        gpu.forward(d);
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t1).count());
      }
      const StepGraphStats st = gpu.step_stats();
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      std::printf("| %d | %s | %.3f | %.3f | %.1f | %lld | %lld | %.1f | %.1f |\n", B, m.name, med, ms.front(), B * 1e3 / med,
                  (long long)(st.captures - before.captures), (long long)(st.replays - before.replays),
                  m.graphs ? double(st.last_nodes) / config.n_layer : 0.0, m.graphs ? st.last_capture_ms : 0.0);
      std::fflush(stdout);
    }
  }
}

int run(int argc, char** argv) {
  std::string why;
  if (!test::gpu_available(&why)) {
    std::printf("cuda_step_bench: no usable CUDA device (%s)\n", why.c_str());
    return 0;
  }
  std::string preset = "flash";
  std::vector<int> batches = {1, 8, 32, 64};
  int prompt = 8, steps = 10;
  bool kernels = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--preset") preset = v;
    else if (a == "--prompt") prompt = std::stoi(v);
    else if (a == "--steps") steps = std::stoi(v);
    else if (a == "--kernels") kernels = v != "0";
    else if (a == "--batches") {
      batches.clear();
      std::stringstream ss(v);
      for (std::string item; std::getline(ss, item, ',');) batches.push_back(std::stoi(item));
    } else {
      std::fprintf(stderr, "usage: cuda_step_bench [--preset tiny|small|flash] [--batches 1,8] [--prompt P] [--steps N] [--kernels 0|1]\n");
      return 2;
    }
  }
  if (kernels) {
    std::printf("| chain → fused kernel | T | launches | chain µs (back to back) | fused µs | chain µs (alone) | fused µs |\n");
    for (int64_t T : {1, 64}) bench_kernels(T);
  }
  if (!preset.empty() && preset != "none") bench_model(preset, batches, prompt, steps);
  return 0;
}

}  // namespace
}  // namespace ds4

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // rows survive an abort
  try {
    return ds4::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_step_bench: error: %s\n", e.what());
    return 1;
  }
}
