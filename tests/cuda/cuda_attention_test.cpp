// GPU attention-side kernels (kernels/cuda/attention.h) against the CPU reference over ragged
// batches: raw-row quantisation (bit-exact) and the ring store, compressor frontier update and
// pooling for ratios 4, 16 and 128 fed in uneven chunks, token-order walk and parallel form
// (pooled rows rel. 1e-6, frontier exact),
// compressed-row finish into block-addressed storage (rel. 1e-5; indexer FP4 codes may flip on a
// last-ulp difference, at most 1 value in 1000), indexer scores (rel. 1e-6, and bit-exact against
// a host restatement of the kernel's summation order) and top-k (exact,
// ties to the lower row), and sink-aware attention over ring, step and compressed rows (rel. 1e-5;
// the split form's 4- and 8-head groupings bit-identical).
// The graph-replayable launch forms (finish over every token through emit_index, query lists
// padded with -1) give the same bits as the compact ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "engine/cpu_layer.h"
#include "engine/model_config.h"
#include "engine/rope.h"
#include "kernels/cpu_ops.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/ops.h"
#include "kernels/f16.h"
#include "kernels/qat.h"
#include "kernels/quant.h"
#include "tests/cuda/gpu_test_util.h"

namespace ds4 {
namespace {

using test::DeviceArray;

struct SeqSpec {
  int32_t start, count, slot;
  std::vector<int32_t> blocks;
};

// Host and device copies of a StepBatch.
struct TestBatch {
  std::vector<int32_t> tok_seq, tok_pos, first, count, start, slot, table;
  int max_blocks = 1;
  DeviceArray<int32_t> d_seq, d_pos, d_first, d_count, d_start, d_slot, d_table;
  explicit TestBatch(const std::vector<SeqSpec>& seqs) {
    for (const SeqSpec& s : seqs) max_blocks = std::max<int>(max_blocks, static_cast<int>(s.blocks.size()));
    for (size_t i = 0; i < seqs.size(); ++i) {
      first.push_back(static_cast<int32_t>(tok_seq.size()));
      count.push_back(seqs[i].count), start.push_back(seqs[i].start), slot.push_back(seqs[i].slot);
      for (int32_t k = 0; k < seqs[i].count; ++k) tok_seq.push_back(static_cast<int32_t>(i)), tok_pos.push_back(seqs[i].start + k);
      std::vector<int32_t> row(max_blocks, 0);
      std::copy(seqs[i].blocks.begin(), seqs[i].blocks.end(), row.begin());
      table.insert(table.end(), row.begin(), row.end());
    }
    d_seq = DeviceArray<int32_t>(tok_seq), d_pos = DeviceArray<int32_t>(tok_pos), d_first = DeviceArray<int32_t>(first);
    d_count = DeviceArray<int32_t>(count), d_start = DeviceArray<int32_t>(start), d_slot = DeviceArray<int32_t>(slot);
    d_table = DeviceArray<int32_t>(table);
  }
  cuda::StepBatch view() const {
    cuda::StepBatch b;
    b.n_tokens = static_cast<int64_t>(tok_seq.size()), b.n_seqs = static_cast<int>(first.size());
    b.token_seq = d_seq.get(), b.token_pos = d_pos.get(), b.seq_first = d_first.get(), b.seq_count = d_count.get();
    b.seq_start = d_start.get(), b.seq_slot = d_slot.get(), b.block_table = d_table.get(), b.max_blocks = max_blocks;
    return b;
  }
};

TEST(CudaAttention, RawRowQuantisationIsBitExact) {
  DS4_REQUIRE_GPU();
  const int64_t T = 9, hd = 512;
  auto kv = test::random_floats(T * hd, 1, 4.0f);
  kv[5] = 70000.0f;  // overflows f16 after FP8 (448·2^8): both sides give inf
  DeviceArray<float> kd(kv), rq(T * hd);
  cuda::quantize_raw_rows({kd.get(), rq.get(), T, 512, 448, true}, nullptr);
  const auto got = rq.to_host();
  for (int64_t t = 0; t < T; ++t) {
    std::vector<float> ref(kv.begin() + t * hd, kv.begin() + (t + 1) * hd);
    fp8_e4m3_round_trip(ref.data(), 448);
    for (auto& v : ref) v = round_to_f16(v);
    for (int64_t i = 0; i < hd; ++i) ASSERT_EQ(f32_bits(got[t * hd + i]), f32_bits(ref[i])) << t << " " << i;
  }
}

// Compressor over three sequences fed in uneven steps, against compressor_step token by token.
void check_compressor(int ratio, int dim) {
  const int width = frontier_width(ratio, dim), rows = frontier_rows(ratio);
  const std::vector<int> lengths = {3 * ratio + 1, 37, 2 * ratio};
  // Steps of 1 token per sequence take the token-order walk, longer ones the parallel form.
  const std::vector<std::vector<int>> steps = {{1, 1, 1}, {1, 30, ratio - 1}, {ratio, 0, 1}, {2 * ratio, 7, ratio}};
  std::vector<float> ape_values = test::random_floats(static_cast<size_t>(ratio) * width, 2, 0.5f);
  std::vector<uint8_t> ape_bytes(*ggml_row_bytes(GgmlType::F16, width) * ratio);
  std::vector<float> ape_f32(ape_values.size());
  for (int r = 0; r < ratio; ++r) {
    quantize_row(GgmlType::F16, &ape_values[r * width], &ape_bytes[r * ape_bytes.size() / ratio], width);
    dequantize_row_ref(GgmlType::F16, &ape_bytes[r * ape_bytes.size() / ratio], &ape_f32[r * width], width);
  }
  DeviceArray<uint8_t> ape(ape_bytes);
  const int n_slots = 3;
  std::vector<float> f_kv(n_slots * rows * width, 0.0f), f_score(n_slots * rows * width, kEmptyScore);
  DeviceArray<float> fk(f_kv), fs(f_score);
  std::vector<int> done(3, 0);
  for (size_t step = 0; step < steps.size(); ++step) {
    std::vector<SeqSpec> specs;
    for (int s = 0; s < 3; ++s) {
      const int count = std::min(steps[step][s], lengths[s] - done[s]);
      if (count > 0) specs.push_back({done[s], count, 2 - s, {}});  // slots in reverse order
    }
    if (specs.empty()) continue;
    TestBatch b(specs);
    const int64_t T = static_cast<int64_t>(b.tok_seq.size());
    const auto kv_proj = test::random_floats(T * width, 10 + step), gate = test::random_floats(T * width, 20 + step, 2.0f);
    std::vector<int32_t> emit(T, -1);
    int n_emit = 0;
    for (int64_t t = 0; t < T; ++t)
      if ((b.tok_pos[t] + 1) % ratio == 0) emit[t] = n_emit++;
    DeviceArray<float> kd(kv_proj), gd(gate), pooled(std::max(n_emit, 1) * dim);
    DeviceArray<int32_t> ed(emit);
    cuda::CompressorParams p;
    p.ratio = ratio, p.row_dim = dim, p.kv_proj = kd.get(), p.gate_proj = gd.get();
    p.ape = ape.get(), p.ape_type = GgmlType::F16, p.ape_row_bytes = ape_bytes.size() / ratio;
    p.frontier_kv = fk.get(), p.frontier_score = fs.get(), p.emit_index = ed.get(), p.pooled = pooled.get();
    cuda::compressor_update(b.view(), p, nullptr);
    const auto got = pooled.to_host();
    std::vector<float> out(dim);
    for (int64_t t = 0; t < T; ++t) {
      const int slot = b.slot[b.tok_seq[t]];
      float* fkv = &f_kv[slot * rows * width];
      float* fsc = &f_score[slot * rows * width];
      const bool emitted = compressor_step(ratio, dim, &kv_proj[t * width], &gate[t * width], ape_f32.data(), b.tok_pos[t], fkv, fsc, out.data());
      ASSERT_EQ(emitted, emit[t] >= 0);
      if (!emitted) continue;
      std::vector<float> g(got.begin() + emit[t] * dim, got.begin() + (emit[t] + 1) * dim);
      EXPECT_LT(test::max_rel_error(g, out), 1e-6) << "ratio " << ratio << " step " << step << " token " << t;
    }
    for (const SeqSpec& s : specs) done[2 - s.slot] += s.count;
  }
  EXPECT_EQ(fk.to_host(), f_kv) << "ratio " << ratio;
  EXPECT_EQ(fs.to_host(), f_score) << "ratio " << ratio;
}

TEST(CudaAttention, CompressorMatchesCpuStepByStep) {
  DS4_REQUIRE_GPU();
  check_compressor(4, 128);
  check_compressor(4, 512);
  check_compressor(16, 64);
  check_compressor(128, 512);
}

TEST(CudaAttention, CompressedFinishNormRopeQuantiseStore) {
  DS4_REQUIRE_GPU();
  const ModelConfig c = preset_flash();
  const RopeFrequencies f = rope_frequencies(c, true);
  for (bool indexer : {false, true}) {
    const int dim = indexer ? 128 : 512, rpb = 64;  // ratio 4
    TestBatch b({{0, 1, 0, {3, 0}}, {0, 1, 1, {1}}});
    const std::vector<int32_t> eseq = {0, 0, 1, 0, 1}, erow = {0, 64, 5, 127, 63}, epos = {0, 256, 20, 508, 252};
    const int64_t n_emit = static_cast<int64_t>(eseq.size());
    const auto pooled = test::random_floats(n_emit * dim, 3, 2.0f), norm = test::random_floats(dim, 4);
    DeviceArray<float> pd(pooled), nd(norm), fd_store(4 * rpb * dim);
    DeviceArray<int32_t> sd(eseq), rd(erow), posd(epos);
    DeviceArray<double> fd(f.freq);
    cuda::fill(fd_store.get(), 4 * rpb * dim, NAN, nullptr);
    cuda::CompressedFinishParams p;
    p.pooled = pd.get(), p.n_emit = n_emit, p.row_dim = dim, p.nope_dim = 448, p.norm = nd.get(), p.eps = 1e-6f;
    p.emit_seq = sd.get(), p.emit_row = rd.get(), p.emit_pos = posd.get(), p.freq = fd.get();
    p.n_pairs = static_cast<int>(f.freq.size()), p.indexer = indexer, p.quantize = true, p.store = fd_store.get();
    p.rows_per_block = rpb;
    cuda::compressed_finish(b.view(), p, nullptr);
    const auto store = fd_store.to_host();
    int flips = 0;
    for (int64_t e = 0; e < n_emit; ++e) {
      std::vector<float> ref(dim);
      rms_norm(&pooled[e * dim], norm.data(), dim, 1e-6f, ref.data());
      apply_rope_tail(ref.data(), dim, f, epos[e], false);
      if (indexer) indexer_hadamard_fp4_round_trip(ref.data(), dim);
      else fp8_e4m3_round_trip(ref.data(), 448);
      const int32_t block = b.table[eseq[e] * b.max_blocks + erow[e] / rpb];
      const float* got = &store[(static_cast<int64_t>(block) * rpb + erow[e] % rpb) * dim];
      for (int i = 0; i < dim; ++i) {
        const double tol = 1e-5 * std::max(1.0f, std::fabs(ref[i]));
        if (std::fabs(got[i] - ref[i]) > tol) {
          ASSERT_TRUE(indexer) << "attention row " << e << " value " << i << ": " << got[i] << " vs " << ref[i];
          ++flips;
        }
      }
    }
    EXPECT_LE(flips, n_emit * dim / 1000) << "indexer FP4 codes that differ";
    // The graph-replayable form: one block per token, emission emit_index[t] (-1: none), same rows.
    const std::vector<int32_t> emit_index = {-1, 3, 0, -1, -1, 4, 1, 2, -1};
    DeviceArray<int32_t> ei(emit_index);
    DeviceArray<float> store2(4 * rpb * dim);
    cuda::fill(store2.get(), 4 * rpb * dim, NAN, nullptr);
    p.store = store2.get(), p.emit_index = ei.get(), p.n_index = static_cast<int64_t>(emit_index.size());
    cuda::compressed_finish(b.view(), p, nullptr);
    const auto store_b = store2.to_host();
    for (size_t i = 0; i < store.size(); ++i) ASSERT_EQ(f32_bits(store_b[i]), f32_bits(store[i])) << "emit_index form, value " << i;
  }
}

TEST(CudaAttention, IndexerScoresAndTopKMatchCpu) {
  DS4_REQUIRE_GPU();
  const int heads = 16, dim = 128, rpb = 64, k = 8;
  // Sequence 0 at positions 1000..1002 (250 rows), sequence 1 at 40 (10 rows); 5 blocks.
  TestBatch b({{1000, 3, 0, {2, 4, 0, 1}}, {40, 1, 1, {3}}});
  const int64_t T = 4, max_rows = 250;
  const auto q = test::random_floats(T * heads * dim, 5), w = test::random_floats(T * heads, 6);
  const auto index = test::random_floats(5 * rpb * dim, 7);
  const std::vector<int32_t> sel = {0, 1, 2, 3};
  DeviceArray<float> qd(q), wd(w), id(index), scores(4 * max_rows);
  DeviceArray<int32_t> seld(sel), out(4 * k);
  cuda::IndexerScoreParams p;
  p.tokens = seld.get(), p.n_sel = 4, p.q = qd.get(), p.w = wd.get(), p.heads = heads, p.dim = dim, p.ratio = 4;
  p.scale = 1.0f / std::sqrt(float(dim) * heads), p.index = id.get(), p.rows_per_block = rpb;
  p.scores = scores.get(), p.max_rows = max_rows;
  cuda::indexer_scores(b.view(), p, nullptr);
  const auto got = scores.to_host();
  for (int64_t t = 0; t < T; ++t) {
    const int64_t n_visible = (b.tok_pos[t] + 1) / 4;
    const int seq = b.tok_seq[t];
    std::vector<float> ref(n_visible), mine(got.begin() + t * max_rows, got.begin() + t * max_rows + n_visible);
    for (int64_t r = 0; r < n_visible; ++r) {
      const float* kr = &index[(static_cast<int64_t>(b.table[seq * b.max_blocks + r / rpb]) * rpb + r % rpb) * dim];
      double s = 0.0;
      for (int h = 0; h < heads; ++h) {
        double d = 0.0;
        for (int i = 0; i < dim; ++i) d += double(q[(t * heads + h) * dim + i]) * kr[i];
        s += w[t * heads + h] * std::max(0.0, d);
      }
      ref[r] = static_cast<float>(s * p.scale);
    }
    EXPECT_LT(test::max_rel_error(mine, ref), 1e-6) << "token " << t;
    for (int64_t r = n_visible; r < max_rows; ++r) ASSERT_EQ(got[t * max_rows + r], -INFINITY);
  }
  // Top-k over the GPU scores, plus a tie-heavy score set for token 0.
  std::vector<float> tied = got;
  for (int64_t r = 0; r < 250; ++r) tied[r] = static_cast<float>((r * 7) % 3);
  for (const auto& set : {got, tied}) {
    scores.upload(set);
    cuda::TopKParams tp;
    tp.tokens = seld.get(), tp.n_sel = 4, tp.scores = scores.get(), tp.max_rows = max_rows, tp.ratio = 4, tp.k = k;
    tp.selected = out.get();
    cuda::indexer_top_k(b.view(), tp, nullptr);
    const auto sel_got = out.to_host();
    for (int64_t t = 0; t < T; ++t) {
      const int64_t n_visible = (b.tok_pos[t] + 1) / 4;
      std::vector<float> s(set.begin() + t * max_rows, set.begin() + t * max_rows + n_visible);
      const std::vector<int64_t> ref = indexer_top_k(s, k);
      for (int j = 0; j < k; ++j)
        ASSERT_EQ(sel_got[t * k + j], j < static_cast<int>(ref.size()) ? ref[j] : -1) << "token " << t << " rank " << j;
    }
  }
  // A padded query list (the graph-replayable form): -1 entries are skipped, the rest unchanged.
  const std::vector<int32_t> padded = {0, 1, 2, 3, -1, -1};
  DeviceArray<int32_t> padd(padded), out2(6 * k);
  DeviceArray<float> scores2(6 * max_rows);
  p.tokens = padd.get(), p.n_sel = 6, p.scores = scores2.get();
  cuda::indexer_scores(b.view(), p, nullptr);
  const auto got2 = scores2.to_host();
  for (int64_t i = 0; i < 4 * max_rows; ++i) ASSERT_EQ(f32_bits(got2[i]), f32_bits(got[i])) << "padded scores, value " << i;
  cuda::TopKParams tp;
  tp.tokens = padd.get(), tp.n_sel = 6, tp.scores = scores2.get(), tp.max_rows = max_rows, tp.ratio = 4, tp.k = k;
  tp.selected = out2.get();
  cuda::indexer_top_k(b.view(), tp, nullptr);
  scores.upload(got);
  tp.tokens = seld.get(), tp.n_sel = 4, tp.scores = scores.get(), tp.selected = out.get();
  cuda::indexer_top_k(b.view(), tp, nullptr);
  const auto sel_padded = out2.to_host(), sel_plain = out.to_host();
  EXPECT_TRUE(std::equal(sel_plain.begin(), sel_plain.end(), sel_padded.begin())) << "padded top-k";
}

// The GPU indexer's exact order for one (query, row): per head, lane l's partial over dims
// l, l+32, ... in order, the 32 partials combined over warp_sum's butterfly tree (xor 16, 8, 4,
// 2, 1), then the heads added in order as fma(w, max(d, 0), total).
float indexer_score_gpu_order(const float* q, const float* w, const float* k_row, int heads, int dim, float scale) {
  double total = 0.0;
  for (int h = 0; h < heads; ++h) {
    double lane[32] = {};
    for (int i = 0; i < dim; ++i) lane[i % 32] += double(q[h * dim + i]) * k_row[i];
    for (int off = 16; off > 0; off >>= 1) {
      double next[32];
      for (int l = 0; l < 32; ++l) next[l] = lane[l] + lane[l ^ off];
      std::copy(next, next + 32, lane);
    }
    total = std::fma(double(w[h]), std::max(0.0, lane[0]), total);
  }
  return static_cast<float>(total * double(scale));
}

// Bit-exact against that order for head counts that fill or pad the kernel's 8-head groups, rows
// narrower than 128 and a row count that ends inside a block of rows.
TEST(CudaAttention, IndexerScoresKeepTheWarpSumOrder) {
  DS4_REQUIRE_GPU();
  const int rpb = 64;
  for (const auto& [heads, dim] : std::vector<std::pair<int, int>>{{64, 128}, {12, 80}, {3, 32}}) {
    TestBatch b({{2043, 2, 0, {1, 3, 0, 5, 2, 4, 6, 7}}, {7, 1, 1, {6}}});
    const int64_t T = 3, max_rows = 512 + 37;
    const auto q = test::random_floats(T * heads * dim, 15), w = test::random_floats(T * heads, 16);
    const auto index = test::random_floats(8 * rpb * dim, 17);
    const std::vector<int32_t> sel = {1, -1, 2, 0};
    DeviceArray<float> qd(q), wd(w), id(index), scores(sel.size() * max_rows);
    DeviceArray<int32_t> seld(sel);
    cuda::IndexerScoreParams p;
    p.tokens = seld.get(), p.n_sel = static_cast<int64_t>(sel.size()), p.q = qd.get(), p.w = wd.get();
    p.heads = heads, p.dim = dim, p.ratio = 4, p.scale = 1.0f / std::sqrt(float(dim) * heads), p.index = id.get();
    p.rows_per_block = rpb, p.scores = scores.get(), p.max_rows = max_rows;
    cuda::indexer_scores(b.view(), p, nullptr);
    const auto got = scores.to_host();
    for (size_t i = 0; i < sel.size(); ++i) {
      const int64_t t = sel[i];
      if (t < 0) continue;
      const int seq = b.tok_seq[t];
      const int64_t n_visible = std::min<int64_t>((b.tok_pos[t] + 1) / 4, max_rows);
      for (int64_t r = 0; r < max_rows; ++r) {
        float ref = -INFINITY;
        if (r < n_visible) {
          const float* kr = &index[(static_cast<int64_t>(b.table[seq * b.max_blocks + r / rpb]) * rpb + r % rpb) * dim];
          ref = indexer_score_gpu_order(&q[t * heads * dim], &w[t * heads], kr, heads, dim, p.scale);
        }
        ASSERT_EQ(f32_bits(got[i * max_rows + r]), f32_bits(ref)) << heads << " heads, query " << i << " row " << r;
      }
    }
  }
}

// CPU restatement of the sink-aware attention of cpu_attention.cpp attend() (without inverse RoPE).
std::vector<float> attention_ref(const std::vector<const float*>& rows, const float* q, float sink, int hd) {
  std::vector<double> s(rows.size());
  double mx = sink;
  for (size_t r = 0; r < rows.size(); ++r) {
    double d = 0.0;
    for (int i = 0; i < hd; ++i) d += double(q[i]) * rows[r][i];
    s[r] = d * (1.0f / std::sqrt(float(hd)));
    mx = std::max(mx, s[r]);
  }
  double den = std::exp(sink - mx);
  std::vector<double> acc(hd, 0.0);
  for (size_t r = 0; r < rows.size(); ++r) {
    const double e = std::exp(s[r] - mx);
    den += e;
    for (int i = 0; i < hd; ++i) acc[i] += e * rows[r][i];
  }
  std::vector<float> out(hd);
  for (int i = 0; i < hd; ++i) out[i] = static_cast<float>(acc[i] / den);
  return out;
}

void check_attention(int ratio) {
  const int hd = 512, heads = 3, window = 128, top_k = 16, n_slots = 2, n_blocks = 4;
  const int rpb = ratio > 0 ? cuda::kKvBlockPositions / ratio : 0;
  // Sequence 0 continues at 300 (ring holds 172..299), sequence 1 starts fresh with 140 tokens.
  TestBatch b({{300, 5, 1, {3, 1}}, {0, 140, 0, {2}}});
  const int64_t T = static_cast<int64_t>(b.tok_seq.size());
  auto ring = test::random_floats(n_slots * window * hd, 8), comp = test::random_floats(n_blocks * std::max(rpb, 1) * hd, 9);
  const auto q = test::random_floats(T * heads * hd, 10, 0.2f), rawq = test::random_floats(T * hd, 11);
  const std::vector<float> sinks = {0.5f, -1.0f, 3.0f};
  std::vector<int32_t> sel_of(T, -1), selected;
  for (int64_t t = 0; t < T && ratio == 4; ++t) {
    const int64_t n_visible = (b.tok_pos[t] + 1) / 4;
    if (n_visible <= top_k) continue;
    sel_of[t] = static_cast<int32_t>(selected.size() / top_k);
    for (int j = 0; j < top_k; ++j) selected.push_back(static_cast<int32_t>((j * n_visible) / top_k));
  }
  DeviceArray<float> rd(ring), cd(comp), qd(q), rqd(rawq), sd(sinks), out(T * heads * hd);
  DeviceArray<int32_t> sod(sel_of), seld(selected.empty() ? std::vector<int32_t>{0} : selected);
  cuda::LayerKv kv;
  kv.raw = rd.get(), kv.comp = ratio > 0 ? cd.get() : nullptr, kv.window = window, kv.head_dim = hd;
  kv.ratio = ratio, kv.rows_per_block = rpb;
  cuda::AttentionParams p;
  p.q = qd.get(), p.rawq = rqd.get(), p.sinks = sd.get(), p.heads = heads;
  if (!selected.empty()) p.sel_of_token = sod.get(), p.selected = seld.get(), p.top_k = top_k;
  p.out = out.get();
  p.max_rows = window + (ratio == 0 ? 0 : ratio == 4 ? top_k : 305 / ratio + 1);
  cuda::attention(b.view(), kv, p, nullptr);
  const auto got = out.to_host();
  for (int64_t t = 0; t < T; ++t) {
    const int s = b.tok_seq[t];
    const int64_t pos = b.tok_pos[t], start = b.start[s];
    std::vector<const float*> rows;
    for (int64_t qp = std::max<int64_t>(0, pos - window + 1); qp <= pos; ++qp)
      rows.push_back(qp < start ? &ring[(b.slot[s] * window + qp % window) * hd] : &rawq[(t - (pos - qp)) * hd]);
    if (ratio > 0) {
      const int64_t n_visible = (pos + 1) / ratio;
      std::vector<int64_t> cs(n_visible);
      std::iota(cs.begin(), cs.end(), 0);
      if (sel_of[t] >= 0) cs.assign(selected.begin() + sel_of[t] * top_k, selected.begin() + (sel_of[t] + 1) * top_k);
      for (int64_t cr : cs) rows.push_back(&comp[(b.table[s * b.max_blocks + cr / rpb] * rpb + cr % rpb) * hd]);
    }
    for (int h = 0; h < heads; ++h) {
      const auto ref = attention_ref(rows, &q[(t * heads + h) * hd], sinks[h], hd);
      const std::vector<float> mine(got.begin() + (t * heads + h) * hd, got.begin() + (t * heads + h + 1) * hd);
      ASSERT_LT(test::max_rel_error(mine, ref), 1e-5) << "ratio " << ratio << " token " << t << " head " << h;
    }
  }
  // The ring then receives the rows still in each sequence's window.
  cuda::store_raw_window(b.view(), kv, rqd.get(), nullptr);
  const auto ring_after = rd.to_host();
  for (int64_t t = 0; t < T; ++t) {
    const int s = b.tok_seq[t];
    const int64_t pos = b.tok_pos[t], end = b.start[s] + b.count[s];
    const float* row = &ring_after[(b.slot[s] * window + pos % window) * hd];
    if (pos >= end - window) {
      ASSERT_EQ(0, std::memcmp(row, &rawq[t * hd], hd * sizeof(float))) << "token " << t;
    }
  }
}

TEST(CudaAttention, SinkAttentionOverRingStepAndCompressedRows) {
  DS4_REQUIRE_GPU();
  check_attention(0);
  check_attention(4);
  check_attention(128);
}

// attention_split's output for `heads` heads (q and sinks: the first heads of 8-head arrays).
std::vector<float> split_attention(const TestBatch& b, const cuda::LayerKv& kv, cuda::AttentionParams p,
                                   const std::vector<float>& q8, const std::vector<float>& sinks8, int heads) {
  const int64_t T = static_cast<int64_t>(b.tok_seq.size());
  const int hd = kv.head_dim;
  std::vector<float> q, sinks(sinks8.begin(), sinks8.begin() + heads);
  for (int64_t t = 0; t < T; ++t) q.insert(q.end(), q8.begin() + t * 8 * hd, q8.begin() + (t * 8 + heads) * hd);
  DeviceArray<float> qd(q), sd(sinks), out(T * heads * hd);
  const size_t ws_bytes = cuda::attention_split_workspace_bytes(heads, hd);
  const size_t ml_bytes = (size_t(cuda::kAttentionChunkTokens) * cuda::kAttentionMaxSplits * heads * 2 * sizeof(double) + 255) / 256 * 256;
  DeviceArray<uint8_t> ws(ws_bytes);
  cuda::AttentionSplitExtras x;
  x.ws_acc = reinterpret_cast<float*>(ws.get()), x.ws_ml = reinterpret_cast<double*>(ws.get() + ws_bytes - ml_bytes);
  p.q = qd.get(), p.sinks = sd.get(), p.heads = heads, p.out = out.get();
  cuda::attention_split(b.view(), kv, p, x, nullptr);
  return out.to_host();
}

// attention_split reads each row for 8 heads at once, or 4 when heads is not a multiple of 8: the
// grouping changes no sum, so the first 4 of 8 heads have the bits of a 4-head call; and both
// match the one-block-per-head attention. Ratio 4: one token over 378 rows (3 splits), one over
// 16 selected rows, a prefill of 130 tokens.
TEST(CudaAttention, SplitAttentionHeadGroupsGiveTheSameBits) {
  DS4_REQUIRE_GPU();
  const int hd = 512, window = 128, top_k = 16, rpb = cuda::kKvBlockPositions / 4;
  TestBatch b({{1000, 2, 1, {3, 1, 0, 2}}, {0, 130, 0, {4}}});
  const int64_t T = static_cast<int64_t>(b.tok_seq.size());
  const auto ring = test::random_floats(2 * window * hd, 30), comp = test::random_floats(5 * rpb * hd, 31);
  const auto q8 = test::random_floats(T * 8 * hd, 32, 0.2f), rawq = test::random_floats(T * hd, 33);
  const auto sinks8 = test::random_floats(8, 34);
  std::vector<int32_t> sel_of(T, -1), selected;
  sel_of[1] = 0;  // token 1 (position 1001) attends to 16 of its 250 rows, token 0 to all of them
  for (int j = 0; j < top_k; ++j) selected.push_back(j * 15);
  DeviceArray<float> rd(ring), cd(comp), rqd(rawq);
  DeviceArray<int32_t> sod(sel_of), seld(selected);
  cuda::LayerKv kv;
  kv.raw = rd.get(), kv.comp = cd.get(), kv.window = window, kv.head_dim = hd, kv.ratio = 4, kv.rows_per_block = rpb;
  cuda::AttentionParams p;
  p.rawq = rqd.get(), p.sel_of_token = sod.get(), p.selected = seld.get(), p.top_k = top_k;
  p.max_rows = window + 1002 / 4;
  const auto out8 = split_attention(b, kv, p, q8, sinks8, 8), out4 = split_attention(b, kv, p, q8, sinks8, 4);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < 4 * hd; ++i)
      ASSERT_EQ(f32_bits(out4[t * 4 * hd + i]), f32_bits(out8[t * 8 * hd + i])) << "token " << t << " value " << i;
  DeviceArray<float> qd(q8), sd(sinks8), out(T * 8 * hd);
  p.q = qd.get(), p.sinks = sd.get(), p.heads = 8, p.out = out.get();
  cuda::attention(b.view(), kv, p, nullptr);
  EXPECT_LT(test::max_rel_error(out8, out.to_host()), 1e-5);
}

}  // namespace
}  // namespace ds4
