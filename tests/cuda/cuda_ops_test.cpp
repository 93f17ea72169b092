// GPU row-wise ops (kernels/cuda/ops.h, the QAT round trips of attention.h) against their CPU
// references: RMSNorm and RoPE/YaRN (rel. 1e-6), FP8 and Hadamard+FP4 round trips (bit-exact),
// hyper-connection coefficients/pre/post/collapse (rel. 1e-5 after 20 Sinkhorn rounds), SwiGLU
// (rel. 1e-6), router (same experts, weights rel. 1e-6, ties to the lower id), expert grouping
// and combine (exact). Shapes include odd token counts and widths.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "engine/hyper_connection.h"
#include "engine/model_config.h"
#include "engine/rope.h"
#include "kernels/cpu_ops.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/ops.h"
#include "kernels/f16.h"
#include "kernels/qat.h"
#include "kernels/quant.h"
#include "tests/cuda/gpu_test_util.h"

namespace ds4 {
namespace {

using test::DeviceArray;

TEST(CudaOps, RmsNormMatchesCpu) {
  DS4_REQUIRE_GPU();
  for (int64_t width : {128, 1000, 4096, 16384}) {
    const int64_t rows = 7;
    const auto x = test::random_floats(rows * width, 1, 3.0f), w = test::random_floats(width, 2);
    DeviceArray<float> xd(x), wd(w), out(rows * width);
    cuda::rms_norm({xd.get(), width, out.get(), width, wd.get(), rows, width, 1e-6f}, nullptr);
    std::vector<float> ref(rows * width);
    for (int64_t r = 0; r < rows; ++r) rms_norm(&x[r * width], w.data(), width, 1e-6f, &ref[r * width]);
    EXPECT_LT(test::max_rel_error(out.to_host(), ref), 1e-6) << "width " << width;
    cuda::rms_norm({xd.get(), width, xd.get(), width, nullptr, rows, width, 1e-6f}, nullptr);  // in place, no weight
    for (int64_t r = 0; r < rows; ++r) rms_norm(&x[r * width], nullptr, width, 1e-6f, &ref[r * width]);
    EXPECT_LT(test::max_rel_error(xd.to_host(), ref), 1e-6) << "width " << width;
  }
}

TEST(CudaOps, RopeTailPlainAndYarnForwardAndInverse) {
  DS4_REQUIRE_GPU();
  const ModelConfig c = preset_flash();
  const int64_t T = 5, heads = 3, width = 512;
  const std::vector<int32_t> pos = {0, 1, 127, 65537, 1048575};
  for (bool compressed : {false, true}) {
    const RopeFrequencies f = rope_frequencies(c, compressed);
    for (bool inverse : {false, true}) {
      const auto x = test::random_floats(T * heads * width, 3);
      DeviceArray<float> xd(x);
      DeviceArray<int32_t> pd(pos);
      DeviceArray<double> fd(f.freq);
      cuda::RopeParams p;
      p.x = xd.get(), p.row_stride = width, p.width = width, p.n_rows = T * heads, p.rows_per_token = heads;
      p.pos = pd.get(), p.freq = fd.get(), p.n_pairs = static_cast<int>(f.freq.size()), p.inverse = inverse;
      cuda::rope_tail(p, nullptr);
      std::vector<float> ref = x;
      for (int64_t r = 0; r < T * heads; ++r) apply_rope_tail(&ref[r * width], width, f, pos[r / heads], inverse);
      EXPECT_LT(test::max_rel_error(xd.to_host(), ref), 1e-6) << "compressed " << compressed << " inverse " << inverse;
    }
  }
}

// Rows at scales from 2^-30 to 2^12, plus zero rows and exact E4M3 / E2M1 midpoints.
std::vector<float> qat_rows(int64_t rows, int64_t width, uint32_t seed) {
  std::vector<float> x = test::random_floats(rows * width, seed);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < width; ++i) x[r * width + i] *= std::ldexp(1.0f, static_cast<int>(r % 43) - 30);
  std::fill(x.begin(), x.begin() + width, 0.0f);
  for (int64_t i = 0; i < width; ++i) x[width + i] = (i % 2 ? -1.0f : 1.0f) * (1.0f + (2 * (i % 8) + 1) / 16.0f);
  return x;
}

TEST(CudaOps, Fp8RoundTripIsBitExact) {
  DS4_REQUIRE_GPU();
  const int64_t rows = 64, width = 512, nope = 448;
  const auto x = qat_rows(rows, width, 5);
  DeviceArray<float> xd(x);
  cuda::fp8_rows(xd.get(), rows, width, nope, nullptr);
  std::vector<float> ref = x;
  for (int64_t r = 0; r < rows; ++r) fp8_e4m3_round_trip(&ref[r * width], nope);
  const auto got = xd.to_host();
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(f32_bits(got[i]), f32_bits(ref[i])) << "value " << i;
}

TEST(CudaOps, HadamardFp4RoundTripIsBitExact) {
  DS4_REQUIRE_GPU();
  for (int dim : {32, 128}) {
    const int64_t rows = 60;
    const auto x = qat_rows(rows, dim, 6);
    DeviceArray<float> xd(x);
    cuda::hadamard_fp4_rows(xd.get(), rows, dim, nullptr);
    std::vector<float> ref = x;
    for (int64_t r = 0; r < rows; ++r) indexer_hadamard_fp4_round_trip(&ref[r * dim], dim);
    const auto got = xd.to_host();
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(f32_bits(got[i]), f32_bits(ref[i])) << "dim " << dim << " value " << i;
  }
}

// A host tensor in `type` bound as a TensorView (for the CPU reference functions).
struct HostTensor {
  std::vector<uint8_t> bytes;
  TensorView view;
  HostTensor(GgmlType type, uint64_t ne0, uint64_t ne1, const std::vector<float>& values) {
    view.type = type, view.ne0 = ne0, view.ne1 = ne1, view.row_bytes = *ggml_row_bytes(type, ne0);
    bytes.resize(view.row_bytes * ne1);
    for (uint64_t r = 0; r < ne1; ++r) quantize_row(type, &values[r * ne0], &bytes[r * view.row_bytes], ne0);
    view.data = bytes.data();
  }
};

TEST(CudaOps, HyperConnectionMixPrePostAndCollapse) {
  DS4_REQUIRE_GPU();
  const ModelConfig c = preset_tiny();
  const int64_t T = 5, n = c.n_embd, hc = c.hc_count, hw = hc * n, mixd = c.hc_mix_dim();
  ThreadPool pool(2);
  const HostTensor fn(GgmlType::F16, hw, mixd, test::random_floats(hw * mixd, 7, 0.05f));
  const HostTensor scale(GgmlType::F32, 3, 1, {0.7f, 1.3f, 0.9f});
  const HostTensor base(GgmlType::F32, mixd, 1, test::random_floats(mixd, 8, 0.5f));
  const auto states = test::random_floats(T * hw, 9);
  const auto y = test::random_floats(T * n, 10);
  const std::vector<HcMix> mix = hc_compute_mix(c, fn.view, scale.view, base.view, states.data(), T, pool);

  DeviceArray<uint8_t> fnd(fn.bytes);
  DeviceArray<float> sd(states), flat(T * hw), mixg(T * mixd), coef(T * mixd), scd(std::vector<float>{0.7f, 1.3f, 0.9f});
  DeviceArray<float> based(test::random_floats(mixd, 8, 0.5f)), x(T * n), yd(y), out(T * hw);
  cuda::rms_norm({sd.get(), hw, flat.get(), hw, nullptr, T, hw, c.rms_eps}, nullptr);
  cuda::MatmulParams mp;
  mp.w = fnd.get(), mp.type = GgmlType::F16, mp.n_in = hw, mp.n_out = mixd, mp.row_bytes = fn.view.row_bytes;
  mp.x = flat.get(), mp.x_stride = hw, mp.y = mixg.get(), mp.y_stride = mixd, mp.n_tokens = T;
  cuda::matmul(mp, nullptr);
  cuda::HcCoefParams cp;
  cp.mix = mixg.get(), cp.scale = scd.get(), cp.base = based.get(), cp.coef = coef.get(), cp.n_tokens = T;
  cp.hc = static_cast<int>(hc), cp.sinkhorn_iters = c.hc_sinkhorn_iters, cp.eps = c.hc_eps;
  cuda::hc_coefficients(cp, nullptr);
  const auto got = coef.to_host();
  for (int64_t t = 0; t < T; ++t)
    for (int i = 0; i < hc; ++i) {
      EXPECT_NEAR(got[t * mixd + i], mix[t].pre[i], 1e-5) << "pre " << t << " " << i;
      EXPECT_NEAR(got[t * mixd + hc + i], mix[t].post[i], 1e-5) << "post " << t << " " << i;
      for (int b = 0; b < hc; ++b)
        EXPECT_NEAR(got[t * mixd + 2 * hc + i * hc + b], mix[t].comb[i * hc + b], 1e-5) << "comb " << t;
    }
  cuda::hc_pre({coef.get(), sd.get(), x.get(), T, n, static_cast<int>(hc)}, nullptr);
  cuda::hc_post({coef.get(), sd.get(), yd.get(), out.get(), T, n, static_cast<int>(hc)}, nullptr);
  std::vector<float> ref_x(T * n), ref_state = states;
  for (int64_t t = 0; t < T; ++t) {
    hc_pre(c, mix[t], &states[t * hw], &ref_x[t * n]);
    hc_post(c, mix[t], &y[t * n], &ref_state[t * hw]);
  }
  EXPECT_LT(test::max_rel_error(x.to_host(), ref_x), 1e-5);
  EXPECT_LT(test::max_rel_error(out.to_host(), ref_state), 1e-5);

  // Head collapse (fn [hw, hc]).
  const HostTensor head_fn(GgmlType::F16, hw, hc, test::random_floats(hw * hc, 11, 0.05f));
  const HostTensor head_scale(GgmlType::F32, 1, 1, {1.1f});
  const HostTensor head_base(GgmlType::F32, hc, 1, {0.1f, -0.2f, 0.3f, 0.0f});
  std::vector<float> ref_h(T * n);
  hc_collapse(c, head_fn.view, head_scale.view, head_base.view, states.data(), T, ref_h.data(), pool);
  DeviceArray<uint8_t> hfd(head_fn.bytes);
  DeviceArray<float> hmix(T * hc), hsc(std::vector<float>{1.1f}), hbase(std::vector<float>{0.1f, -0.2f, 0.3f, 0.0f}), h(T * n);
  mp.w = hfd.get(), mp.n_out = hc, mp.row_bytes = head_fn.view.row_bytes, mp.y = hmix.get(), mp.y_stride = hc;
  cuda::matmul(mp, nullptr);
  cuda::HcCollapseParams hp;
  hp.mix = hmix.get(), hp.scale = hsc.get(), hp.base = hbase.get(), hp.states = sd.get(), hp.out = h.get();
  hp.n_tokens = T, hp.n_embd = n, hp.hc = static_cast<int>(hc), hp.eps = c.hc_eps;
  cuda::hc_collapse(hp, nullptr);
  EXPECT_LT(test::max_rel_error(h.to_host(), ref_h), 1e-5);
}

TEST(CudaOps, SwigluWithClampAndRouteWeight) {
  DS4_REQUIRE_GPU();
  const int64_t rows = 6, width = 300;
  const auto g = test::random_floats(rows * width, 12, 8.0f), u = test::random_floats(rows * width, 13, 8.0f);
  const std::vector<float> w = {1.0f, 0.5f, 2.0f, 0.25f, 1.5f, 0.1f};
  DeviceArray<float> gd(g), ud(u), wd(w), mid(rows * width);
  cuda::swiglu({gd.get(), ud.get(), mid.get(), rows, width, 10.0f, wd.get()}, nullptr);
  std::vector<float> ref(rows * width);
  for (int64_t i = 0; i < rows * width; ++i)
    ref[i] = silu(std::min(g[i], 10.0f)) * std::clamp(u[i], -10.0f, 10.0f) * w[i / width];
  EXPECT_LT(test::max_rel_error(mid.to_host(), ref), 1e-6);
}

// The router of cpu_moe.cpp, restated: experts (sorted by id) and weights of one token.
void route_ref(const float* logits, const float* bias, const int32_t* hash_row, int n_expert, int k,
               std::vector<int>& experts, std::vector<float>& weights) {
  std::vector<float> score(n_expert), biased(n_expert);
  for (int e = 0; e < n_expert; ++e) {
    score[e] = std::sqrt(softplus(logits[e]));
    biased[e] = score[e] + (bias ? bias[e] : 0.0f);
  }
  std::vector<int> chosen;
  if (hash_row) {
    chosen.assign(hash_row, hash_row + k);
  } else {
    std::vector<int> order(n_expert);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int a, int b) { return biased[a] != biased[b] ? biased[a] > biased[b] : a < b; });
    chosen.assign(order.begin(), order.begin() + k);
  }
  float sum = 0.0f;
  for (int e : chosen) sum += score[e];
  const float denom = std::max(sum, 6.103515625e-5f);
  std::vector<std::pair<int, float>> pairs;
  for (int e : chosen) pairs.push_back({e, score[e] / denom * 1.5f});
  std::stable_sort(pairs.begin(), pairs.end(), [](auto& a, auto& b) { return a.first < b.first; });
  experts.clear(), weights.clear();
  for (auto& [e, w] : pairs) experts.push_back(e), weights.push_back(w);
}

TEST(CudaOps, RouterTopKWithBiasHashAndTies) {
  DS4_REQUIRE_GPU();
  const int n_expert = 40, k = 6;
  const int64_t T = 9;
  auto logits = test::random_floats(T * n_expert, 14, 3.0f);
  std::fill(logits.begin(), logits.begin() + n_expert, 0.25f);  // token 0: all tied
  const auto bias = test::random_floats(n_expert, 15, 0.1f);
  std::vector<int32_t> table(50 * k), tokens(T);
  for (size_t i = 0; i < table.size(); ++i) table[i] = static_cast<int32_t>((i * 7 + 3) % n_expert);
  for (int64_t t = 0; t < T; ++t) tokens[t] = static_cast<int32_t>((t * 11) % 50);
  DeviceArray<float> ld(logits), bd(bias), wd(T * k);
  DeviceArray<int32_t> td(table), tokd(tokens), ed(T * k);
  for (bool hash : {false, true})
    for (bool with_bias : {false, true}) {
      cuda::RouterParams p;
      p.logits = ld.get(), p.bias = with_bias ? bd.get() : nullptr, p.hash_table = hash ? td.get() : nullptr;
      p.tokens = tokd.get(), p.experts = ed.get(), p.weights = wd.get(), p.n_tokens = T, p.n_expert = n_expert, p.k = k;
      cuda::route(p, nullptr);
      const auto experts = ed.to_host();
      const auto weights = wd.to_host();
      for (int64_t t = 0; t < T; ++t) {
        std::vector<int> re;
        std::vector<float> rw;
        route_ref(&logits[t * n_expert], with_bias && !hash ? bias.data() : nullptr, hash ? &table[tokens[t] * k] : nullptr,
                  n_expert, k, re, rw);
        for (int j = 0; j < k; ++j) {
          ASSERT_EQ(experts[t * k + j], re[j]) << "token " << t << " hash " << hash << " bias " << with_bias;
          EXPECT_NEAR(weights[t * k + j], rw[j], 1e-6 * std::fabs(rw[j]) + 1e-9);
        }
      }
    }
}

// moe_group's offsets, rows (each expert's assignments in increasing order) and active list
// against a walk over the ids.
void check_grouping(const std::vector<int32_t>& experts, int64_t T, int k, int n_expert) {
  DeviceArray<int32_t> ed(experts), od(n_expert + 1), tr(T * k), sr(T * k), act(n_expert), n_act(1);
  cuda::moe_group({ed.get(), T, k, n_expert, od.get(), tr.get(), sr.get(), act.get(), n_act.get()}, nullptr);
  const auto offsets = od.to_host(), token_rows = tr.to_host(), slot_rows = sr.to_host();
  const auto active = act.to_host();
  std::vector<int32_t> want_active;
  for (int e = 0; e < n_expert; ++e)
    if (std::count(experts.begin(), experts.end(), e) > 0) want_active.push_back(e);
  ASSERT_EQ(n_act.to_host()[0], static_cast<int32_t>(want_active.size()));
  for (size_t i = 0; i < want_active.size(); ++i) ASSERT_EQ(active[i], want_active[i]);
  int at = 0;
  for (int e = 0; e < n_expert; ++e) {
    ASSERT_EQ(offsets[e], at) << "expert " << e;
    for (int64_t a = 0; a < T * k; ++a)
      if (experts[a] == e) {
        ASSERT_EQ(slot_rows[at], a);
        ASSERT_EQ(token_rows[at], a / k);
        ++at;
      }
  }
  ASSERT_EQ(offsets[n_expert], T * k);
}

TEST(CudaOps, MoeGroupAndCombine) {
  DS4_REQUIRE_GPU();
  const int n_expert = 12, k = 3;
  const int64_t T = 11, n = 64;
  std::vector<int32_t> experts(T * k);
  for (int64_t i = 0; i < T * k; ++i) experts[i] = static_cast<int32_t>((i * 5 + i / 7) % 9);  // 4, 8..11 empty
  check_grouping(experts, T, k, n_expert);
  // A prefill chunk's routes (2048 tokens × 6 of 256 experts: 16 warps × 768 ids), skewed so that
  // some experts take hundreds of assignments spread over every warp, and a few none.
  std::mt19937 rng(18);
  std::vector<int32_t> big(2048 * 6);
  for (auto& e : big) e = static_cast<int32_t>(rng() % 4 == 0 ? rng() % 8 : 16 + rng() % 200);
  check_grouping(big, 2048, 6, 256);

  const auto out = test::random_floats(T * k * n, 16), shared = test::random_floats(T * n, 17);
  DeviceArray<float> outd(out), shd(shared), y(T * n);
  cuda::moe_combine({outd.get(), shd.get(), y.get(), T, n, k}, nullptr);
  const auto got = y.to_host();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t d = 0; d < n; ++d) {
      float ref = 0.0f;
      for (int s = 0; s < k; ++s) ref += out[(t * k + s) * n + d];
      ASSERT_EQ(got[t * n + d], ref + shared[t * n + d]);
    }
}

}  // namespace
}  // namespace ds4
