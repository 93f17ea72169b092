// cuda_bench: micro-benchmarks of the CUDA kernels at the full model's shapes (MODEL.md 4.3): the
// device-to-device copy peak measured first, then each product shape of the model (grouped experts:
// the distinct experts uniform routing reaches) at 1, 8, 64, 256 and 2048 tokens on the tensor
// cores and, up to 64 tokens, on the CUDA-core kernel, with GB/s against that peak and TFLOP/s
// (each weight byte counted once), the attention kernel at decode and
// the indexer scores at 16K context. Weights are real quantised blocks (a quantised tile repeated)
// rotated over enough copies to exceed the L2. Prints a table; no assertions (timings are never
// test results). Exits 0 with a message when no GPU is present. Run by scripts/gpu_check.sh.
// Tuning runs: DS4_BENCH_TOKENS="1,8" picks the token counts, DS4_BENCH_CORES=0 skips the CUDA-core
// kernel, DS4_BENCH_PRODUCTS_ONLY=1 skips the attention and indexer lines, DS4_BENCH_ONLY=TEXT
// runs only the products whose name contains TEXT, DS4_BENCH_PAIRS=1 adds gate/up-like pairs of the
// shape as two launches and as one (cuda::matmul_pair), DS4_BENCH_PLANES=1 the expert formats with
// x split once into bf16 planes (cuda::split_x_planes of the x rows, timed with the product: "xpl").
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/cuda/matmul.h"
#include "kernels/cuda/ops.h"
#include "kernels/quant.h"
#include "tests/cuda/gpu_test_util.h"

namespace ds4 {
namespace {

using cuda::DeviceBuffer;

// Median time in microseconds of `reps` calls of fn(i), each timed with events.
template <typename Fn>
double time_us(int reps, Fn fn) {
  cudaEvent_t a, b;
  DS4_CUDA_CHECK(cudaEventCreate(&a));
  DS4_CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) fn(i);  // warm-up
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    DS4_CUDA_CHECK(cudaEventRecord(a));
    fn(i);
    DS4_CUDA_CHECK(cudaEventRecord(b));
    DS4_CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    DS4_CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return 1000.0 * ms[ms.size() / 2];
}

// Mean time in microseconds of one call when `reps` calls run back to back (launch gaps hidden
// behind the previous kernel, as in a CUDA graph or a busy stream).
template <typename Fn>
double stream_us(int reps, Fn fn) {
  cudaEvent_t a, b;
  DS4_CUDA_CHECK(cudaEventCreate(&a));
  DS4_CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < 3; ++i) fn(i);
  DS4_CUDA_CHECK(cudaEventRecord(a));
  for (int i = 0; i < reps; ++i) fn(i);
  DS4_CUDA_CHECK(cudaEventRecord(b));
  DS4_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  DS4_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return 1000.0 * ms / reps;
}

double copy_peak_gbs() {
  const size_t bytes = size_t(2) << 30;
  DeviceBuffer src(bytes), dst(bytes);
  DS4_CUDA_CHECK(cudaMemset(src.get(), 1, bytes));
  const double us = time_us(10, [&](int) { DS4_CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice)); });
  return 2.0 * bytes / (us * 1e3);
}

// `copies` device copies of an n_out × n_in matrix of real quantised blocks.
struct BenchWeights {
  DeviceBuffer buf;
  uint64_t matrix_bytes = 0, row_bytes = 0;
  int copies = 1;
  BenchWeights(GgmlType type, int64_t n_in, int64_t n_out, uint64_t min_total) {
    row_bytes = *ggml_row_bytes(type, n_in);
    matrix_bytes = row_bytes * n_out;
    copies = static_cast<int>(std::max<uint64_t>(1, (min_total + matrix_bytes - 1) / matrix_bytes));
    buf.grow(matrix_bytes * copies);
    const int64_t tile_rows = std::min<int64_t>(n_out, 64);
    const auto values = test::random_floats(tile_rows * n_in, 1);
    std::vector<uint8_t> tile(tile_rows * row_bytes);
    for (int64_t r = 0; r < tile_rows; ++r) quantize_row(type, &values[r * n_in], &tile[r * row_bytes], n_in);
    uint8_t* base = buf.as<uint8_t>();
    for (uint64_t off = 0; off < matrix_bytes * copies; off += tile.size())
      DS4_CUDA_CHECK(cudaMemcpy(base + off, tile.data(), std::min<uint64_t>(tile.size(), matrix_bytes * copies - off),
                                cudaMemcpyHostToDevice));
  }
  const uint8_t* copy(int i) const { return buf.as<uint8_t>() + (i % copies) * matrix_bytes; }
};

// One product shape of the full model; experts > 0: grouped over that many experts, each token
// routed to 6 of them.
struct Case {
  std::string name;
  GgmlType type;
  int64_t n_in, n_out;
  int64_t x_group_rows = 0;  // grouped output projection
  int experts = 0;
};

// Distinct experts that T tokens × 6 routes reach under uniform routing (rounded).
int active_experts(int experts, int64_t tokens) {
  const double reached = experts * (1.0 - std::pow(1.0 - 6.0 / experts, static_cast<double>(tokens)));
  return static_cast<int>(std::min<double>(experts, std::max(6.0, std::round(reached))));
}

// Times one shape at one token count on one path: median alone, and back to back.
struct Timing {
  double us = 0, us_stream = 0, bytes = 0, flops = 0;
};
// second: a matrix of the same shape run with the same activations and token list (gate and up),
// as a second launch or (paired) in the same launch (cuda::matmul_pair).
// planes: x split into bf16 planes by cuda::split_x_planes before each call (timed with it).
Timing time_product(const Case& c, const BenchWeights& w, int64_t tokens, bool cuda_cores,
                    const BenchWeights* second = nullptr, bool paired = false, bool planes = false) {
  const int groups = c.experts > 0 ? c.experts : 1;
  const int active = c.experts > 0 ? active_experts(c.experts, tokens) : 1;
  const int64_t x_width = c.x_group_rows > 0 ? c.n_in * (c.n_out / c.x_group_rows) : c.n_in;
  const int64_t entries = c.experts > 0 ? tokens * 6 : tokens;
  DeviceBuffer x(sizeof(float) * tokens * x_width), y(sizeof(float) * entries * c.n_out);
  const auto xv = test::random_floats(tokens * x_width, 2);
  DS4_CUDA_CHECK(cudaMemcpy(x.get(), xv.data(), xv.size() * sizeof(float), cudaMemcpyHostToDevice));
  // Expert mode: the entries spread round robin over `active` experts spaced across the 256; each
  // timed call shifts the set so that consecutive calls read different experts (not the L2).
  const int stride = c.experts > 0 ? c.experts / active : 1, n_sets = std::min(stride, 16);
  std::vector<test::DeviceArray<int32_t>> offset_sets, list_sets;
  std::vector<int32_t> rows(entries), ident(entries);
  for (int64_t i = 0; i < entries; ++i) rows[i] = static_cast<int32_t>(i % tokens), ident[i] = static_cast<int32_t>(i);
  test::DeviceArray<int32_t> count(std::vector<int32_t>{active});
  for (int set = 0; c.experts > 0 && set < n_sets; ++set) {
    std::vector<int32_t> offsets(groups + 1, 0), list;
    for (int64_t i = 0; i < entries; ++i) offsets[1 + (i % active) * stride + set]++;
    for (int g = 0; g < groups; ++g) {
      if (offsets[g + 1] > 0) list.push_back(g);
      offsets[g + 1] += offsets[g];
    }
    offset_sets.emplace_back(offsets);
    list_sets.emplace_back(list);
  }
  test::DeviceArray<int32_t> rd(rows), yr(ident);
  cuda::MatmulParams p;
  p.type = c.type, p.n_in = c.n_in, p.n_out = c.n_out, p.row_bytes = w.row_bytes, p.cuda_cores = cuda_cores;
  p.x = x.as<float>(), p.x_stride = x_width, p.y = y.as<float>(), p.y_stride = c.n_out, p.n_tokens = entries;
  p.x_group_rows = c.x_group_rows;
  if (c.experts > 0) {
    p.n_groups = c.experts, p.group_stride_bytes = w.row_bytes * c.n_out;
    p.x_rows = rd.get(), p.y_rows = yr.get(), p.group_count = count.get();
    p.grid_groups = std::min<int64_t>(c.experts, entries);
  }
  DeviceBuffer y2(second ? y.bytes() : 0), x_planes(planes ? tokens * cuda::x_plane_row_bytes(x_width) : 0);
  if (planes) p.x_planes = x_planes.as<uint8_t>();
  auto call = [&](int i) {
    if (planes) cuda::split_x_planes(p.x, x_width, tokens, x_width, x_planes.as<uint8_t>(), nullptr);
    if (c.experts > 0) {
      p.w = w.copy(0);
      p.group_offsets = offset_sets[i % n_sets].get();
      p.group_list = list_sets[i % n_sets].get();
    } else {
      p.w = w.copy(i);
    }
    if (!second) return cuda::matmul(p, nullptr);
    cuda::MatmulParams p2 = p;
    p2.w = c.experts > 0 ? second->copy(0) : second->copy(i), p2.y = y2.as<float>();
    if (paired) return cuda::matmul_pair(p, p2, nullptr);
    cuda::matmul(p, nullptr);
    cuda::matmul(p2, nullptr);
  };
  const double first = time_us(1, call);
  const int reps = static_cast<int>(std::clamp(50000.0 / first, 3.0, 30.0));  // ≈ 50 ms per measurement
  Timing t;
  t.us = time_us(reps, call);
  t.us_stream = stream_us(reps, call);
  const double read = static_cast<double>(c.experts > 0 ? w.row_bytes * c.n_out * active : w.matrix_bytes) * (second ? 2 : 1);
  t.bytes = read + sizeof(float) * (tokens * x_width + entries * c.n_out);
  t.flops = 2.0 * c.n_in * c.n_out * entries * (second ? 2 : 1);
  return t;
}

// Token counts to run: DS4_BENCH_TOKENS (comma separated) or 1, 8, 64, 256, 2048.
std::vector<int64_t> bench_tokens() {
  std::vector<int64_t> out;
  if (const char* e = std::getenv("DS4_BENCH_TOKENS"))
    for (const char* q = e; *q;) {
      char* next = nullptr;
      const long long v = std::strtoll(q, &next, 10);
      if (next == q) break;
      if (v > 0) out.push_back(v);
      q = *next == ',' ? next + 1 : next;
    }
  if (out.empty()) out = {1, 8, 64, 256, 2048};
  return out;
}

bool env_flag(const char* name, bool fallback) {
  const char* e = std::getenv(name);
  return e ? std::string(e) != "0" : fallback;
}

// The shape at each token count on the tensor cores, and on the CUDA-core kernel (the previous
// path) up to 64 tokens unless DS4_BENCH_CORES=0.
void print_timing(const Case& c, int64_t tokens, const char* path, const Timing& t, double peak) {
  const double gbs = t.bytes / (t.us * 1e3), gbs_stream = t.bytes / (t.us_stream * 1e3);
  std::printf("%-30s %-7s %6lld %7lld %5lld %-5s %10.2f %7.1f %5.1f%% %10.2f %7.1f %5.1f%% %7.1f\n", c.name.c_str(),
              std::string(ggml_type_name(c.type)).c_str(), static_cast<long long>(c.n_in), static_cast<long long>(c.n_out),
              static_cast<long long>(tokens), path, t.us, gbs, 100.0 * gbs / peak, t.us_stream, gbs_stream,
              100.0 * gbs_stream / peak, t.flops / (t.us_stream * 1e6));
}

// The shape at each token count on the tensor cores, and on the CUDA-core kernel (the previous
// path) up to 64 tokens unless DS4_BENCH_CORES=0; with DS4_BENCH_PAIRS=1 also two matrices of the
// shape (gate and up) as two launches ("2x") and as one paired launch ("pair").
void bench_product(const Case& c, double peak) {
  const int groups = c.experts > 0 ? c.experts : 1;
  BenchWeights w(c.type, c.n_in, c.n_out * groups, uint64_t(512) << 20);
  const bool with_cores = env_flag("DS4_BENCH_CORES", true), pairs = env_flag("DS4_BENCH_PAIRS", false);
  std::unique_ptr<BenchWeights> w2;
  if (pairs) w2 = std::make_unique<BenchWeights>(c.type, c.n_in, c.n_out * groups, uint64_t(512) << 20);
  for (int64_t tokens : bench_tokens()) {
    for (bool cores : {false, true}) {
      if (cores && (tokens > 64 || !with_cores)) continue;
      print_timing(c, tokens, cores ? "cores" : "mma", time_product(c, w, tokens, cores), peak);
    }
    cuda::MatmulParams probe;
    probe.type = c.type, probe.x_group_rows = c.x_group_rows, probe.n_out = c.n_out;
    if (env_flag("DS4_BENCH_PLANES", false) && cuda::reads_x_planes(probe))
      print_timing(c, tokens, "xpl", time_product(c, w, tokens, false, nullptr, false, true), peak);
    if (!pairs) continue;
    print_timing(c, tokens, "2x", time_product(c, w, tokens, false, w2.get(), false), peak);
    print_timing(c, tokens, "pair", time_product(c, w, tokens, false, w2.get(), true), peak);
  }
}

void bench_attention(int64_t tokens, int64_t comp_rows) {
  const int hd = 512, heads = 64, window = 128, top_k = 512;
  const int64_t blocks = (comp_rows * 4 + 255) / 256 + 1;
  test::DeviceArray<float> ring(tokens * window * hd), comp(blocks * 64 * hd), q(tokens * heads * hd), rawq(tokens * hd);
  test::DeviceArray<float> sinks(test::random_floats(heads, 3)), out(tokens * heads * hd);
  for (auto* a : {&ring, &comp, &q, &rawq}) a->upload(test::random_floats(a->size(), 4, 0.1f));
  std::vector<int32_t> seq, pos, first, count, start, slot, table, sel_of, selected;
  for (int64_t t = 0; t < tokens; ++t) {
    seq.push_back(static_cast<int32_t>(t)), pos.push_back(static_cast<int32_t>(comp_rows * 4 + 10));
    first.push_back(static_cast<int32_t>(t)), count.push_back(1), start.push_back(pos.back()), slot.push_back(static_cast<int32_t>(t));
    for (int64_t b = 0; b < blocks; ++b) table.push_back(static_cast<int32_t>(b));
    sel_of.push_back(static_cast<int32_t>(t));
    for (int j = 0; j < top_k; ++j) selected.push_back(static_cast<int32_t>(j * (comp_rows / top_k)));
  }
  test::DeviceArray<int32_t> d_seq(seq), d_pos(pos), d_first(first), d_count(count), d_start(start), d_slot(slot);
  test::DeviceArray<int32_t> d_table(table), d_sel_of(sel_of), d_selected(selected);
  cuda::StepBatch b;
  b.n_tokens = tokens, b.n_seqs = static_cast<int>(tokens), b.token_seq = d_seq.get(), b.token_pos = d_pos.get();
  b.seq_first = d_first.get(), b.seq_count = d_count.get(), b.seq_start = d_start.get(), b.seq_slot = d_slot.get();
  b.block_table = d_table.get(), b.max_blocks = static_cast<int>(blocks);
  cuda::LayerKv kv;
  kv.raw = ring.get(), kv.comp = comp.get(), kv.window = window, kv.head_dim = hd, kv.ratio = 4, kv.rows_per_block = 64;
  cuda::AttentionParams p;
  p.q = q.get(), p.rawq = rawq.get(), p.sinks = sinks.get(), p.heads = heads, p.sel_of_token = d_sel_of.get();
  p.selected = d_selected.get(), p.top_k = top_k, p.out = out.get(), p.max_rows = window + top_k;
  const double us = time_us(30, [&](int) { cuda::attention(b, kv, p, nullptr); });
  const double rows_bytes = double(tokens) * (window + top_k) * hd * 4;
  std::printf("attention decode %3lld tok x 64 heads x %d rows     %9.2f us  (%.1f GB/s of distinct rows)\n",
              static_cast<long long>(tokens), window + top_k, us, rows_bytes / (us * 1e3));
}

void bench_indexer(int64_t context) {
  const int heads = 64, dim = 128, rpb = 64;
  const int64_t n_rows = context / 4, blocks = (n_rows + rpb - 1) / rpb;
  test::DeviceArray<float> q(test::random_floats(heads * dim, 5)), w(test::random_floats(heads, 6));
  test::DeviceArray<float> index(test::random_floats(blocks * rpb * dim, 7)), scores(n_rows);
  std::vector<int32_t> table(blocks);
  for (int64_t i = 0; i < blocks; ++i) table[i] = static_cast<int32_t>(i);
  test::DeviceArray<int32_t> d_seq(std::vector<int32_t>{0}), d_pos(std::vector<int32_t>{static_cast<int32_t>(context - 1)});
  test::DeviceArray<int32_t> d_table(table), d_tok(std::vector<int32_t>{0}), sel(512);
  cuda::StepBatch b;
  b.n_tokens = 1, b.n_seqs = 1, b.token_seq = d_seq.get(), b.token_pos = d_pos.get(), b.block_table = d_table.get();
  b.max_blocks = static_cast<int>(blocks);
  cuda::IndexerScoreParams p;
  p.tokens = d_tok.get(), p.n_sel = 1, p.q = q.get(), p.w = w.get(), p.heads = heads, p.dim = dim, p.ratio = 4;
  p.scale = 0.01f, p.index = index.get(), p.rows_per_block = rpb, p.scores = scores.get(), p.max_rows = n_rows;
  const double us = time_us(20, [&](int) { cuda::indexer_scores(b, p, nullptr); });
  cuda::TopKParams tp;
  tp.tokens = d_tok.get(), tp.n_sel = 1, tp.scores = scores.get(), tp.max_rows = n_rows, tp.ratio = 4, tp.k = 512;
  tp.selected = sel.get();
  const double us_topk = time_us(20, [&](int) { cuda::indexer_top_k(b, tp, nullptr); });
  std::printf("indexer at %6lld context: scores %lld rows x 64 heads %9.2f us (%.1f GB/s), top-512 %8.2f us\n",
              static_cast<long long>(context), static_cast<long long>(n_rows), us, n_rows * dim * 4.0 / (us * 1e3), us_topk);
}

}  // namespace
}  // namespace ds4

int main() {
  using namespace ds4;
  std::string why;
  if (!test::gpu_available(&why)) {
    std::printf("cuda_bench: skipped, no usable CUDA device (%s)\n", why.c_str());
    return 0;
  }
  cudaDeviceProp prop{};
  DS4_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB, %.1f GiB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20,
              prop.totalGlobalMem / double(1ull << 30));
  const double peak = copy_peak_gbs();
  std::printf("device-to-device copy: %.1f GB/s (read + write), the roofline below\n\n", peak);
  DeviceBuffer one(sizeof(float));
  auto tiny = [&](int) { cuda::fill(one.as<float>(), 1, 0.0f, nullptr); };  // a one-thread kernel
  std::printf("one-thread kernel: %.2f us alone, %.2f us back to back\n\n", time_us(50, tiny), stream_us(200, tiny));
  std::printf("%-30s %-7s %6s %7s %5s %-5s %10s %7s %6s %10s %7s %6s %7s\n", "product (alone | back to back)", "type",
              "n_in", "n_out", "tok", "path", "us", "GB/s", "peak", "us", "GB/s", "peak", "TFLOP/s");
  const std::vector<Case> cases = {
      {"attn_q_a", GgmlType::Q8_0, 4096, 1024},
      {"attn_q_b", GgmlType::Q8_0, 1024, 32768},
      {"attn_kv", GgmlType::Q8_0, 4096, 512},
      {"attn_output_a (8 groups)", GgmlType::Q8_0, 4096, 8192, 1024},
      {"attn_output_b", GgmlType::Q8_0, 8192, 4096},
      {"ffn_gate_shexp", GgmlType::Q8_0, 4096, 2048},
      {"ffn_down_shexp", GgmlType::Q8_0, 2048, 4096},
      {"output head", GgmlType::Q8_0, 4096, 129280},
      {"hc_attn_fn", GgmlType::F16, 16384, 24},
      {"ffn_gate_inp (router)", GgmlType::F16, 4096, 256},
      {"attn_compressor_kv (ratio 4)", GgmlType::F16, 4096, 1024},
      {"indexer.attn_q_b", GgmlType::F16, 1024, 8192},
      {"experts gate IQ2_XXS (of 256)", GgmlType::IQ2_XXS, 4096, 2048, 0, 256},
      {"experts down Q2_K (of 256)", GgmlType::Q2_K, 2048, 4096, 0, 256},
      {"experts gate Q4_K (of 256)", GgmlType::Q4_K, 4096, 2048, 0, 256},
  };
  const char* only = std::getenv("DS4_BENCH_ONLY");
  for (const Case& c : cases)
    if (!only || c.name.find(only) != std::string::npos) bench_product(c, peak);
  if (env_flag("DS4_BENCH_PRODUCTS_ONLY", false)) return 0;
  std::printf("\n");
  bench_attention(1, 4096);
  bench_attention(64, 4096);
  bench_indexer(16384);
  bench_indexer(131072);
  return 0;
}
