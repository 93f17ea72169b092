// The fused kernels of kernels/cuda/fused_ops.h against the unfused chains they replace (ops.h,
// attention.h): q-head norm + RoPE (heads 512, 128 and 1000 wide), KV-row norm + RoPE + storage
// quantisation and indexer-query RoPE + Hadamard/FP4 bit-identical; route_and_group and
// swiglu_pair identical to route + moe_group and two swiglu calls (also over repeated calls: the
// block counter returns to 0); the hyper-connection boundary (post-mix, mix, Sinkhorn, pre-mix,
// RMSNorm; F16 and F32 fn rows) within 1e-5 of the chain, states bit-identical; split attention
// (+ inverse RoPE + ring store) within 1e-5 of attention + store_raw_window + rope_tail, ring
// bit-identical. (The graph-replayable launch forms — compressed-row finish over every token,
// padded indexer query lists — are checked end to end by cuda_step_test.)
#include <gtest/gtest.h>

#include <algorithm>

#include "engine/model_config.h"
#include "engine/rope.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/fused_ops.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/ops.h"
#include "kernels/f16.h"
#include "kernels/quant.h"
#include "tests/cuda/gpu_test_util.h"

namespace ds4 {
namespace {

using test::DeviceArray;

void expect_bits_equal(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(f32_bits(a[i]), f32_bits(b[i])) << what << " value " << i;
}

TEST(CudaFused, QHeadsKvRowAndIndexerQueryEqualTheChains) {
  DS4_REQUIRE_GPU();
  const ModelConfig c = preset_flash();
  const RopeFrequencies f = rope_frequencies(c, true);
  const int64_t T = 3, heads = 5, hd = 512;
  const std::vector<int32_t> pos = {0, 4097, 70001};
  DeviceArray<int32_t> pd(pos);
  DeviceArray<double> fd(f.freq);
  const int n_pairs = static_cast<int>(f.freq.size());
  // q heads (one warp per head: the model's 512 wide, the tiny preset's 128, and 1000).
  cuda::RopeParams rp;
  rp.pos = pd.get(), rp.freq = fd.get(), rp.n_pairs = n_pairs;
  for (const int64_t qd : {512, 128, 1000}) {
    const auto q = test::random_floats(T * heads * qd, 21, 2.0f);
    DeviceArray<float> chain(q), fused(q);
    cuda::rms_norm({chain.get(), qd, chain.get(), qd, nullptr, T * heads, qd, 1e-6f}, nullptr);
    rp.x = chain.get(), rp.row_stride = qd, rp.width = qd, rp.n_rows = T * heads, rp.rows_per_token = heads;
    cuda::rope_tail(rp, nullptr);
    cuda::q_heads_norm_rope({fused.get(), T, static_cast<int>(heads), static_cast<int>(qd), 1e-6f, pd.get(), fd.get(), n_pairs},
                            nullptr);
    expect_bits_equal(fused.to_host(), chain.to_host(), "q heads");
  }
  // KV rows, with and without the storage quantisation.
  for (bool quantize : {true, false}) {
    const auto kv = test::random_floats(T * hd, 22, 3.0f), w = test::random_floats(hd, 23);
    DeviceArray<float> kvd(kv), wd(w), rawq_chain(T * hd), rawq_fused(T * hd);
    cuda::rms_norm({kvd.get(), hd, kvd.get(), hd, wd.get(), T, hd, 1e-6f}, nullptr);
    rp.x = kvd.get(), rp.row_stride = hd, rp.width = hd, rp.n_rows = T, rp.rows_per_token = 1;
    cuda::rope_tail(rp, nullptr);
    cuda::quantize_raw_rows({kvd.get(), rawq_chain.get(), T, static_cast<int>(hd), 448, quantize}, nullptr);
    DeviceArray<float> kv2(kv);
    cuda::KvRowParams kp;
    kp.kv = kv2.get(), kp.weight = wd.get(), kp.rawq = rawq_fused.get(), kp.n_tokens = T, kp.head_dim = static_cast<int>(hd);
    kp.nope_dim = 448, kp.pos = pd.get(), kp.freq = fd.get(), kp.n_pairs = n_pairs, kp.quantize = quantize;
    cuda::kv_norm_rope_quant(kp, nullptr);
    expect_bits_equal(rawq_fused.to_host(), rawq_chain.to_host(), quantize ? "kv rows, quantised" : "kv rows");
  }
  // Indexer query heads (128 wide).
  const int64_t ih = 7, id = 128;
  for (bool quantize : {true, false}) {
    const auto iq = test::random_floats(T * ih * id, 24);
    DeviceArray<float> ic(iq), ifu(iq);
    rp.x = ic.get(), rp.row_stride = id, rp.width = id, rp.n_rows = T * ih, rp.rows_per_token = ih;
    cuda::rope_tail(rp, nullptr);
    if (quantize) cuda::hadamard_fp4_rows(ic.get(), T * ih, static_cast<int>(id), nullptr);
    cuda::IndexerQParams p;
    p.q = ifu.get(), p.n_tokens = T, p.heads = static_cast<int>(ih), p.dim = static_cast<int>(id), p.pos = pd.get();
    p.freq = fd.get(), p.n_pairs = n_pairs, p.quantize = quantize;
    cuda::indexer_q_rope_qat(p, nullptr);
    expect_bits_equal(ifu.to_host(), ic.to_host(), "indexer q");
  }
}

TEST(CudaFused, RouteAndGroupEqualsRouteThenGroup) {
  DS4_REQUIRE_GPU();
  const int n_expert = 256, k = 6;
  for (int64_t T : {1, 7, 64, 700}) {  // 700·6 > the fused limit: the two-launch fallback
    auto logits = test::random_floats(T * n_expert, 31 + static_cast<uint32_t>(T), 2.0f);
    std::fill(logits.begin(), logits.begin() + n_expert, 0.5f);  // token 0: all tied
    const auto bias = test::random_floats(n_expert, 32, 0.1f);
    DeviceArray<float> ld(logits), bd(bias), w1(T * k), w2(T * k);
    DeviceArray<int32_t> e1(T * k), e2(T * k), o1(n_expert + 1), o2(n_expert + 1), tr1(T * k), tr2(T * k), sr1(T * k),
        sr2(T * k), a1(n_expert), a2(n_expert), n1(1), n2(1), counter(std::vector<int32_t>{0});
    cuda::RouterParams r;
    r.logits = ld.get(), r.bias = bd.get(), r.n_tokens = T, r.n_expert = n_expert, r.k = k;
    r.experts = e1.get(), r.weights = w1.get();
    cuda::route(r, nullptr);
    cuda::moe_group({e1.get(), T, k, n_expert, o1.get(), tr1.get(), sr1.get(), a1.get(), n1.get()}, nullptr);
    r.experts = e2.get(), r.weights = w2.get();
    for (int rep = 0; rep < 3; ++rep)
      cuda::route_and_group(r, {e2.get(), T, k, n_expert, o2.get(), tr2.get(), sr2.get(), a2.get(), n2.get()},
                            counter.get(), nullptr);
    EXPECT_EQ(e2.to_host(), e1.to_host()) << "T " << T;
    expect_bits_equal(w2.to_host(), w1.to_host(), "weights");
    EXPECT_EQ(o2.to_host(), o1.to_host());
    EXPECT_EQ(tr2.to_host(), tr1.to_host());
    EXPECT_EQ(sr2.to_host(), sr1.to_host());
    EXPECT_EQ(n2.to_host(), n1.to_host());
    const int n_active = n1.to_host()[0];
    const auto act1 = a1.to_host(), act2 = a2.to_host();
    EXPECT_TRUE(std::equal(act1.begin(), act1.begin() + n_active, act2.begin()));
    EXPECT_EQ(counter.to_host()[0], 0);
  }
}

TEST(CudaFused, SwigluPairEqualsTwoCalls) {
  DS4_REQUIRE_GPU();
  const auto g1 = test::random_floats(6 * 300, 41, 8.0f), u1 = test::random_floats(6 * 300, 42, 8.0f);
  const auto g2 = test::random_floats(1 * 200, 43, 8.0f), u2 = test::random_floats(1 * 200, 44, 8.0f);
  const std::vector<float> w = {1.0f, 0.5f, 2.0f, 0.25f, 1.5f, 0.1f};
  DeviceArray<float> g1d(g1), u1d(u1), g2d(g2), u2d(u2), wd(w), m1(6 * 300), m2(200), f1(6 * 300), f2(200);
  cuda::swiglu({g1d.get(), u1d.get(), m1.get(), 6, 300, 10.0f, wd.get()}, nullptr);
  cuda::swiglu({g2d.get(), u2d.get(), m2.get(), 1, 200, 10.0f, nullptr}, nullptr);
  cuda::swiglu_pair({g1d.get(), u1d.get(), f1.get(), 6, 300, 10.0f, wd.get()}, {g2d.get(), u2d.get(), f2.get(), 1, 200, 10.0f, nullptr},
                    nullptr);
  expect_bits_equal(f1.to_host(), m1.to_host(), "routed");
  expect_bits_equal(f2.to_host(), m2.to_host(), "shared");
}

// One boundary: post-mix of (coef0, states, y | experts + shared), then mix / coef / pre / norm
// of the next sub-layer, by the chain of ops.h kernels and by hc_boundary + hc_finish.
void check_boundary(const ModelConfig& c, bool moe_output, bool with_post, uint32_t seed, GgmlType fn_type = GgmlType::F16) {
  const int64_t T = 4, n = c.n_embd, hc = c.hc_count, hw = hc * n, mixd = c.hc_mix_dim(), k = 3;
  const int64_t fn_bytes_per = fn_type == GgmlType::F16 ? 2 : 4;
  std::vector<float> fn_vals = test::random_floats(hw * mixd, seed, 0.05f);
  std::vector<uint8_t> fn_bytes(mixd * hw * fn_bytes_per);
  for (int64_t r = 0; r < mixd; ++r) quantize_row(fn_type, &fn_vals[r * hw], &fn_bytes[r * hw * fn_bytes_per], hw);
  DeviceArray<uint8_t> fnd(fn_bytes);
  auto coef0 = test::random_floats(T * mixd, seed + 1, 0.5f);
  DeviceArray<float> coef0d(coef0), sd(test::random_floats(T * hw, seed + 2)), y(test::random_floats(T * n, seed + 3));
  DeviceArray<float> eo(test::random_floats(T * k * n, seed + 4)), sh(test::random_floats(T * n, seed + 5));
  DeviceArray<float> scale(std::vector<float>{0.7f, 1.3f, 0.9f}), base(test::random_floats(mixd, seed + 6, 0.5f));
  DeviceArray<float> nw(test::random_floats(n, seed + 7));
  // Chain.
  DeviceArray<float> y_used(T * n), st_chain(T * hw), flat(T * hw), mix(T * mixd), coef_chain(T * mixd), x(T * n), normed_chain(T * n);
  const float* states_next = sd.get();
  if (with_post) {
    if (moe_output) cuda::moe_combine({eo.get(), sh.get(), y_used.get(), T, n, static_cast<int>(k)}, nullptr);
    cuda::hc_post({coef0d.get(), sd.get(), moe_output ? y_used.get() : y.get(), st_chain.get(), T, n, static_cast<int>(hc)}, nullptr);
    states_next = st_chain.get();
  }
  cuda::rms_norm({states_next, hw, flat.get(), hw, nullptr, T, hw, c.rms_eps}, nullptr);
  cuda::MatmulParams mp;
  mp.w = fnd.get(), mp.type = fn_type, mp.n_in = hw, mp.n_out = mixd, mp.row_bytes = hw * fn_bytes_per;
  mp.x = flat.get(), mp.x_stride = hw, mp.y = mix.get(), mp.y_stride = mixd, mp.n_tokens = T;
  cuda::matmul(mp, nullptr);
  cuda::HcCoefParams cp;
  cp.mix = mix.get(), cp.scale = scale.get(), cp.base = base.get(), cp.coef = coef_chain.get(), cp.n_tokens = T;
  cp.hc = static_cast<int>(hc), cp.sinkhorn_iters = c.hc_sinkhorn_iters, cp.eps = c.hc_eps;
  cuda::hc_coefficients(cp, nullptr);
  cuda::hc_pre({coef_chain.get(), states_next, x.get(), T, n, static_cast<int>(hc)}, nullptr);
  cuda::rms_norm({x.get(), n, normed_chain.get(), n, nw.get(), T, n, c.rms_eps}, nullptr);
  // Fused.
  DeviceArray<float> st_fused(T * hw), coef_fused(coef0), normed_fused(T * n);
  DeviceArray<double> partial(T * cuda::hc_boundary_chunks(hw) * (1 + mixd));
  cuda::HcBoundaryParams bp;
  bp.states = sd.get(), bp.n_tokens = T, bp.n_embd = n, bp.hc = static_cast<int>(hc), bp.mix_dim = static_cast<int>(mixd);
  if (with_post) {
    bp.prev_coef = coef_fused.get(), bp.states_out = st_fused.get();
    if (moe_output) bp.expert_out = eo.get(), bp.shared = sh.get(), bp.k = static_cast<int>(k);
    else bp.y = y.get();
  }
  bp.fn = fnd.get(), bp.fn_type = fn_type, bp.fn_row_bytes = hw * fn_bytes_per, bp.partial = partial.get();
  cuda::hc_boundary(bp, nullptr);
  cuda::HcFinishParams fp;
  fp.partial = partial.get(), fp.states = with_post ? st_fused.get() : sd.get(), fp.scale = scale.get(), fp.base = base.get();
  fp.coef = coef_fused.get(), fp.norm_weight = nw.get(), fp.normed = normed_fused.get(), fp.n_tokens = T, fp.n_embd = n;
  fp.hc = static_cast<int>(hc), fp.mix_dim = static_cast<int>(mixd), fp.sinkhorn_iters = c.hc_sinkhorn_iters;
  fp.hc_eps = c.hc_eps, fp.rms_eps = c.rms_eps;
  cuda::hc_finish(fp, nullptr);
  if (with_post) expect_bits_equal(st_fused.to_host(), st_chain.to_host(), "post-mixed states");
  EXPECT_LT(test::max_rel_error(coef_fused.to_host(), coef_chain.to_host()), 1e-5) << "coefficients";
  EXPECT_LT(test::max_rel_error(normed_fused.to_host(), normed_chain.to_host()), 1e-5) << "normed input";
}

TEST(CudaFused, HyperConnectionBoundaryMatchesTheChain) {
  DS4_REQUIRE_GPU();
  for (const ModelConfig& c : {preset_tiny(), preset_flash()}) {
    check_boundary(c, false, false, 51);  // first layer: no post
    check_boundary(c, false, true, 61);   // after attention
    check_boundary(c, true, true, 71);    // after the MoE (combine fused in)
  }
  check_boundary(preset_tiny(), true, true, 72, GgmlType::F32);  // F32 fn rows (the f32 models)
  // Post only (after the last layer): states as hc_post's.
  const ModelConfig c = preset_tiny();
  const int64_t T = 2, n = c.n_embd, hw = c.hc_count * n, mixd = c.hc_mix_dim();
  DeviceArray<float> coef(test::random_floats(T * mixd, 81)), sd(test::random_floats(T * hw, 82)), y(test::random_floats(T * n, 83));
  DeviceArray<float> a(T * hw), b(T * hw);
  cuda::hc_post({coef.get(), sd.get(), y.get(), a.get(), T, n, c.hc_count}, nullptr);
  cuda::HcBoundaryParams bp;
  bp.prev_coef = coef.get(), bp.states = sd.get(), bp.y = y.get(), bp.states_out = b.get();
  bp.n_tokens = T, bp.n_embd = n, bp.hc = c.hc_count, bp.mix_dim = static_cast<int>(mixd);
  cuda::hc_boundary(bp, nullptr);
  expect_bits_equal(b.to_host(), a.to_host(), "post only");
}


// attention_split (+ inverse RoPE + ring store) against attention + store_raw_window + rope_tail:
// two sequences (one decoding at 700, one prefilling 3 tokens at 1000), dense KV layout, ratios
// 0 / 4 (one token selecting 64 rows) / 128, 64 heads of 512.
TEST(CudaFused, SplitAttentionMatchesTheKernelChain) {
  DS4_REQUIRE_GPU();
  const int heads = 64, hd = 512, window = 128, n_blocks = 8;
  const ModelConfig c = preset_flash();
  const RopeFrequencies f = rope_frequencies(c, true);
  const std::vector<int32_t> tseq = {0, 1, 1, 1}, tpos = {700, 1000, 1001, 1002};
  const std::vector<int32_t> first = {0, 1}, count = {1, 3}, start = {700, 1000}, slot = {0, 1};
  std::vector<int32_t> table(2 * n_blocks);
  for (int i = 0; i < 2 * n_blocks; ++i) table[i] = i;
  DeviceArray<int32_t> seqd(tseq), posd(tpos), firstd(first), countd(count), startd(start), slotd(slot), tabled(table);
  cuda::StepBatch b;
  b.n_tokens = 4, b.n_seqs = 2, b.token_seq = seqd.get(), b.token_pos = posd.get(), b.seq_first = firstd.get();
  b.seq_count = countd.get(), b.seq_start = startd.get(), b.seq_slot = slotd.get(), b.block_table = tabled.get();
  b.max_blocks = n_blocks;
  DeviceArray<double> fd(f.freq);
  const int n_pairs = static_cast<int>(f.freq.size());
  for (int ratio : {0, 4, 128}) {
    const int rows_per_block = ratio ? 256 / ratio : 1;
    DeviceArray<float> q(test::random_floats(4 * heads * hd, 90 + ratio)), rawq(test::random_floats(4 * hd, 91));
    DeviceArray<float> sinks(test::random_floats(heads, 92)), comp(test::random_floats(2 * n_blocks * rows_per_block * hd, 93));
    const auto ring0 = test::random_floats(2 * window * hd, 94);
    DeviceArray<float> ring_a(ring0), ring_b(ring0), out_a(4 * heads * hd), out_b(4 * heads * hd);
    std::vector<int32_t> sel_of = {-1, -1, -1, -1}, selected;
    if (ratio == 4) {
      sel_of[0] = 0;
      for (int i = 0; i < 64; ++i) selected.push_back(i * 2 + 1);
    }
    DeviceArray<int32_t> sel_ofd(sel_of), selectedd(selected.empty() ? std::vector<int32_t>{0} : selected);
    cuda::LayerKv kv;
    kv.comp = comp.get(), kv.window = window, kv.head_dim = hd, kv.ratio = ratio, kv.rows_per_block = rows_per_block;
    cuda::AttentionParams ap;
    ap.q = q.get(), ap.rawq = rawq.get(), ap.sinks = sinks.get(), ap.heads = heads;
    if (ratio == 4) ap.sel_of_token = sel_ofd.get(), ap.selected = selectedd.get(), ap.top_k = 64;
    ap.max_rows = window + (ratio ? 1003 / ratio : 0);
    kv.raw = ring_a.get(), ap.out = out_a.get();
    cuda::attention(b, kv, ap, nullptr);
    cuda::store_raw_window(b, kv, rawq.get(), nullptr);
    cuda::RopeParams rp;
    rp.x = out_a.get(), rp.row_stride = hd, rp.width = hd, rp.n_rows = 4 * heads, rp.rows_per_token = heads;
    rp.pos = posd.get(), rp.freq = fd.get(), rp.n_pairs = n_pairs, rp.inverse = true;
    cuda::rope_tail(rp, nullptr);
    DeviceArray<uint8_t> ws(cuda::attention_split_workspace_bytes(heads, hd));
    cuda::AttentionSplitExtras x;
    const size_t ml_bytes = (size_t(cuda::kAttentionChunkTokens) * cuda::kAttentionMaxSplits * heads * 2 * sizeof(double) + 255) / 256 * 256;
    x.ws_acc = reinterpret_cast<float*>(ws.get());
    x.ws_ml = reinterpret_cast<double*>(ws.get() + cuda::attention_split_workspace_bytes(heads, hd) - ml_bytes);
    x.inv_freq = fd.get(), x.n_pairs = n_pairs, x.store_raw = true;
    kv.raw = ring_b.get(), ap.out = out_b.get();
    cuda::attention_split(b, kv, ap, x, nullptr);
    EXPECT_LT(test::max_rel_error(out_b.to_host(), out_a.to_host()), 1e-5) << "ratio " << ratio;
    expect_bits_equal(ring_b.to_host(), ring_a.to_host(), "ring");
  }
}

}  // namespace
}  // namespace ds4
