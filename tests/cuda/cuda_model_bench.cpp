// cuda_model_bench: the CUDA backend on a whole model, on one GPU. The weights come either from a
// GGUF file (mapped, uploaded as stored, with a progress bar) or, with --synth PRESET, straight
// from the synthetic generator into GPU memory (DeviceWeights::synthesize: the bytes of
// `ds4serve-model synth --preset PRESET --quant Q --seed S`, no file; the full-size q2 model is
// 86.7 GB). Prints weight memory, the KV capacity left, the device copy bandwidth, and per batch
// size the prefill time and decode step time / tokens per second (greedy, sampled on the GPU).
// With --sweep, the issue-10 table instead (cuda_model_sweep.h): decode over contexts × batches,
// prefill chunks by depth, as CSV files in --out-dir (scripts/h200_bench.sh runs it).
// Measurements, not checks; docs/PERFORMANCE.md records its runs.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/load_error.h"
#include "engine/model.h"
#include "engine/model_info.h"
#include "engine/model_layout.h"
#include "cuda_model_sweep.h"

namespace ds4 {
namespace {

constexpr const char* kUsage =
    "usage: cuda_model_bench (--synth PRESET [--quant q2|q4] [--seed S] | --model FILE)\n"
    "                        [--batches 1,2,4,...] [--prompt P] [--steps N] [--context C] [--time-limit S] [--threads T]\n"
    "  --synth     generate the synthetic model of that preset (tiny, small, flash) in GPU memory\n"
    "  --context   also decode one sequence at context C (prefilled in 512-token chunks)\n"
    "       cuda_model_bench (--synth PRESET ... | --model FILE) --sweep [--contexts 4096,16384]\n"
    "                        [--batches 1,...,256] [--steps N] [--point-time S] [--time-limit S]\n"
    "                        [--prefill-depths 0,16384] [--prefill-chunk 2048] [--prefill-reps R]\n"
    "                        [--kv-reserve GIB] [--out-dir DIR]\n"
    "  --sweep     decode step time per (context, batch) with the KV filled to the context without a\n"
    "              prefill, and prefill chunks at each depth; writes DIR/decode.csv, prefill.csv, meta.csv\n";

struct Options {
  std::string synth, model, quant = "q2";
  uint64_t seed = 1;
  std::vector<int> batches = {1, 2, 4, 8, 16, 32, 64};
  int prompt = 32, steps = 8, context = 0, threads = 0;
  double time_limit_s = 300;
  bool sweep = false;
  SweepOptions sw;
  double kv_reserve_gib = 8;  // device memory left for the step scratch and the sampler (sweep)
};

std::vector<int> int_list(const std::string& v) {
  std::vector<int> out;
  std::stringstream ss(v);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stoi(item));
  return out;
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") { std::fputs(kUsage, stdout); std::exit(0); }
    if (a == "--sweep") { o.sweep = true; continue; }
    if (i + 1 >= argc) throw LoadError("option " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--synth") o.synth = v;
    else if (a == "--model") o.model = v;
    else if (a == "--quant") o.quant = v;
    else if (a == "--seed") o.seed = std::stoull(v);
    else if (a == "--prompt") o.prompt = std::stoi(v);
    else if (a == "--steps") o.steps = std::stoi(v);
    else if (a == "--context") o.context = std::stoi(v);
    else if (a == "--threads") o.threads = std::stoi(v);
    else if (a == "--time-limit") o.time_limit_s = std::stod(v);
    else if (a == "--batches") o.batches = int_list(v);
    else if (a == "--contexts") o.sw.contexts = int_list(v);
    else if (a == "--prefill-depths") o.sw.prefill_depths = int_list(v);
    else if (a == "--prefill-chunk") o.sw.prefill_chunk = std::stoi(v);
    else if (a == "--prefill-reps") o.sw.prefill_reps = std::stoi(v);
    else if (a == "--point-time") o.sw.point_time_s = std::stod(v);
    else if (a == "--kv-reserve") o.kv_reserve_gib = std::stod(v);
    else if (a == "--out-dir") o.sw.out_dir = v;
    else throw LoadError("unknown option " + a);
  }
  if (o.synth.empty() == o.model.empty()) throw LoadError("give exactly one of --synth PRESET and --model FILE");
  if (o.prompt < 1 || o.steps < 1 || o.batches.empty()) throw LoadError("--prompt, --steps and --batches must be >= 1");
  for (int b : o.batches)
    if (b < 1) throw LoadError("batch sizes must be >= 1");
  if (o.sw.prefill_chunk < 1 || o.sw.prefill_reps < 1) throw LoadError("--prefill-chunk and --prefill-reps must be >= 1");
  for (int c : o.sw.contexts)
    if (c < 0) throw LoadError("contexts must be >= 0");
  o.sw.batches = o.batches;
  o.sw.steps = o.steps;
  o.sw.time_limit_s = o.time_limit_s;
  o.sw.seed = o.seed + 6;
  return o;
}

// A progress bar on stderr: redrawn in place on a terminal, one line per 10% otherwise.
DeviceWeights::Progress progress_bar(const char* what) {
  const bool tty = isatty(2);
  auto t0 = std::make_shared<Clock::time_point>(Clock::now());
  auto last = std::make_shared<int>(-1);
  return [=](uint64_t done, uint64_t total) {
    const int pct = total ? static_cast<int>(100.0 * done / total) : 100;
    if (pct == *last || (!tty && pct / 10 == *last / 10 && pct != 100)) return;
    *last = pct;
    const double s = seconds_since(*t0);
    char bar[41];
    for (int i = 0; i < 40; ++i) bar[i] = i < pct * 40 / 100 ? '#' : '.';
    bar[40] = 0;
    std::fprintf(stderr, "%s%s [%s] %3d%% %6.1f / %.1f GB %5.1f s %6.1f GB/s%s", tty ? "\r" : "", what, bar, pct,
                 done / 1e9, total / 1e9, s, s > 0 ? done / 1e9 / s : 0.0, tty && pct < 100 ? "" : "\n");
  };
}

// Device-to-device copy bandwidth (bytes read + written per second) over a 2 GiB buffer.
double copy_bandwidth_gbs() {
  const size_t bytes = size_t(2) << 30;
  cuda::DeviceBuffer a(bytes), b(bytes);
  DS4_CUDA_CHECK(cudaMemset(a.get(), 1, bytes));
  cudaEvent_t e0, e1;
  DS4_CUDA_CHECK(cudaEventCreate(&e0));
  DS4_CUDA_CHECK(cudaEventCreate(&e1));
  DS4_CUDA_CHECK(cudaMemcpy(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice));
  DS4_CUDA_CHECK(cudaEventRecord(e0));
  const int reps = 10;
  for (int i = 0; i < reps; ++i) DS4_CUDA_CHECK(cudaMemcpy(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice));
  DS4_CUDA_CHECK(cudaEventRecord(e1));
  DS4_CUDA_CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  DS4_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return 2.0 * bytes * reps / (ms / 1e3) / 1e9;
}

// Weight bytes one decode step reads with B tokens under uniform routing: everything but the
// routed experts, plus the expected distinct experts per layer (n · (1 − (1 − k/n)^B)).
double step_weight_bytes(const ModelConfig& c, QuantScheme scheme, int batch) {
  double dense = 0, routed = 0;
  for (const TensorSpec& s : model_tensor_specs(c)) {
    const double b = double(*tensor_bytes(s.dims, tensor_type_for(s, scheme)));
    if (s.name == "token_embd.weight") continue;  // rows gathered, not read whole
    (s.role == TensorRole::kExpertGateUp || s.role == TensorRole::kExpertDown ? routed : dense) += b;
  }
  const double k = c.n_expert_used, n = c.n_expert;
  return dense + routed * (1.0 - std::pow(1.0 - k / n, batch));
}

struct Timing {
  double mean_ms = 0, median_ms = 0, min_ms = 0;
};
Timing summarize(std::vector<double> ms) {
  Timing t;
  std::sort(ms.begin(), ms.end());
  t.mean_ms = std::accumulate(ms.begin(), ms.end(), 0.0) / ms.size();
  t.median_ms = ms[ms.size() / 2];
  t.min_ms = ms.front();
  return t;
}

// B sequences: one prefill of `prompt` tokens each (one forward), then `steps` greedy decode steps
// (tokens sampled on the GPU). Prints the timings.
void bench_batch(CudaBackend& gpu, const ModelConfig& c, QuantScheme scheme, int B, int prompt, int steps,
                 double peak_gbs, std::mt19937& rng) {
  std::vector<std::unique_ptr<CudaSequenceKv>> kv;
  std::vector<std::vector<int32_t>> tokens(B);
  ForwardBatch b;
  for (int s = 0; s < B; ++s) {
    kv.push_back(gpu.new_sequence());
    if (!kv.back()) throw LoadError("no KV slot for sequence " + std::to_string(s));
    tokens[s].resize(prompt);
    for (auto& t : tokens[s]) t = static_cast<int32_t>(100 + rng() % 100000);
    b.sequences.push_back({kv.back().get(), tokens[s], false});
  }
  auto t0 = Clock::now();
  gpu.forward(b);
  const double prefill_s = seconds_since(t0);
  const std::vector<cuda::SampleRow> greedy(B, cuda::SampleRow{0.0f, 1.0f, 0.0f, 0, 0, 0});
  std::vector<int32_t> next = gpu.sample(greedy);
  std::vector<double> step_ms, sample_ms;
  for (int i = 0; i < steps; ++i) {
    ForwardBatch d;
    for (int s = 0; s < B; ++s) {
      tokens[s].assign(1, next[s]);
      d.sequences.push_back({kv[s].get(), tokens[s], false});
    }
    t0 = Clock::now();
    gpu.forward(d);
    step_ms.push_back(seconds_since(t0) * 1e3);
    t0 = Clock::now();
    next = gpu.sample(greedy);
    sample_ms.push_back(seconds_since(t0) * 1e3);
  }
  const Timing t = summarize(step_ms), ts = summarize(sample_ms);
  const double bytes = step_weight_bytes(c, scheme, B);
  std::printf("batch %3d: prefill %d x %d tokens %.3f s (%.0f tok/s); decode step ms median %.2f mean %.2f min %.2f; "
              "%.1f tok/s aggregate, %.1f per sequence; sample %.2f ms; weights/step %.2f GB (uniform routing) = "
              "%.1f GB/s, %.1f%% of copy peak\n",
              B, B, prompt, prefill_s, B * prompt / prefill_s, t.median_ms, t.mean_ms, t.min_ms, B * 1e3 / t.median_ms,
              1e3 / t.median_ms, ts.median_ms, bytes / 1e9, bytes / 1e9 / (t.median_ms / 1e3),
              100.0 * bytes / 1e9 / (t.median_ms / 1e3) / peak_gbs);
  std::fflush(stdout);
}

// One sequence prefilled to `context` tokens in 512-token chunks, then `steps` decode steps.
void bench_context(CudaBackend& gpu, int context, int steps, std::mt19937& rng) {
  auto kv = gpu.new_sequence();
  std::vector<int32_t> chunk;
  const auto t0 = Clock::now();
  for (int pos = 0; pos < context; pos += 512) {
    chunk.resize(std::min(512, context - pos));
    for (auto& t : chunk) t = static_cast<int32_t>(100 + rng() % 100000);
    ForwardBatch b;
    b.sequences.push_back({kv.get(), chunk, false});
    gpu.forward(b);
  }
  const double prefill_s = seconds_since(t0);
  std::vector<double> step_ms;
  std::vector<int32_t> tok = {1000};
  for (int i = 0; i < steps; ++i) {
    ForwardBatch b;
    b.sequences.push_back({kv.get(), tok, false});
    const auto t1 = Clock::now();
    gpu.forward(b);
    step_ms.push_back(seconds_since(t1) * 1e3);
    tok[0] = gpu.sample(std::vector<cuda::SampleRow>(1, cuda::SampleRow{0.0f, 1.0f, 0.0f, 0, 0, 0}))[0];
  }
  if (profile_step_wanted()) {
    ForwardBatch b;
    b.sequences.push_back({kv.get(), tok, false});
    profile_region([&] { gpu.forward(b); });
  }
  std::string each;
  for (double ms : step_ms) {
    char one[24];
    std::snprintf(one, sizeof one, " %.2f", ms);
    each += one;
  }
  const Timing t = summarize(step_ms);
  std::printf("context %d: prefill in 512-token chunks %.2f s (%.0f tok/s); decode step ms median %.2f (%.1f tok/s); "
              "each:%s\n",
              context, prefill_s, context / prefill_s, t.median_ms, 1e3 / t.median_ms, each.c_str());
  std::fflush(stdout);
}

// DIR/meta.csv: what the sweep ran on (key,value).
void write_meta(const Options& o, const char* device, double peak_gbs, uint64_t weight_bytes, size_t free_after_weights,
                const CudaBackendOptions& bo, uint64_t kv_bytes) {
  const std::string path = o.sw.out_dir + "/meta.csv";
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw LoadError("cannot write " + path);
  std::fprintf(f, "key,value\ndevice,%s\nmodel,%s\nquant,%s\ncopy_peak_gb_s,%.1f\nweight_bytes,%llu\n", device,
               o.synth.empty() ? o.model.c_str() : ("synthetic-" + o.synth).c_str(), o.quant.c_str(), peak_gbs,
               (unsigned long long)weight_bytes);
  std::fprintf(f, "free_after_weights_bytes,%zu\nkv_slots,%d\nkv_blocks,%lld\nkv_bytes,%llu\nkv_fill,positions set without prefill\n",
               free_after_weights, bo.max_seqs, (long long)bo.kv_blocks, (unsigned long long)kv_bytes);
  std::fclose(f);
}

int run(const Options& o) {
  CudaBackend::select_device(0);
  cudaDeviceProp prop{};
  DS4_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  size_t free0 = 0, total = 0;
  DS4_CUDA_CHECK(cudaMemGetInfo(&free0, &total));
  std::printf("device %s, %.1f GiB, %.1f GiB free\n", prop.name, total / 1073741824.0, free0 / 1073741824.0);
  const double peak_gbs = copy_bandwidth_gbs();
  std::printf("device-to-device copy: %.0f GB/s (bytes read + written)\n", peak_gbs);

  std::unique_ptr<Model> model;
  ModelConfig config;
  QuantScheme scheme = QuantScheme::kQ2;
  DeviceWeights weights;
  const auto t0 = Clock::now();
  if (!o.synth.empty()) {
    config = preset_by_name(o.synth);
    const auto q = quant_scheme_from_name(o.quant);
    if (!q) throw LoadError("unknown --quant " + o.quant);
    scheme = *q;
    weights = DeviceWeights::synthesize(config, scheme, o.seed, o.threads, progress_bar("synthesize"));
  } else {
    model = load_model(o.model);
    config = model->config;
    scheme = matching_scheme(*model->file, config).value_or(QuantScheme::kQ2);
    weights = DeviceWeights::upload(model->weights, progress_bar("upload"));
  }
  const double load_s = seconds_since(t0);
  size_t free1 = 0;
  DS4_CUDA_CHECK(cudaMemGetInfo(&free1, &total));
  std::printf("model %s (%s, %d layers, %d experts): weights %.2f GB (%.2f GiB) on the device in %.1f s (%.1f GB/s)\n",
              o.synth.empty() ? o.model.c_str() : ("synthetic " + o.synth).c_str(), quant_scheme_name(scheme),
              config.n_layer, config.n_expert, weights.bytes() / 1e9, weights.bytes() / 1073741824.0, load_s,
              weights.bytes() / 1e9 / load_s);
  const uint64_t block = CudaKvPool::block_bytes(config), slot = CudaKvPool::slot_bytes(config);
  const int max_b = *std::max_element(o.batches.begin(), o.batches.end());
  const int64_t per_seq = (o.prompt + o.steps + 255) / 256, ctx_blocks = (o.context + o.steps + 255) / 256;
  CudaBackendOptions bo;
  bo.max_seqs = max_b;
  bo.kv_blocks = std::max<int64_t>(per_seq * max_b, ctx_blocks);
  if (o.sweep) {  // as many blocks as the largest point needs, within the memory left
    const double left = double(free1) - o.kv_reserve_gib * 1073741824.0 - double(slot) * max_b;
    if (left < double(block)) throw LoadError("no device memory left for the KV pool of the sweep");
    bo.kv_blocks = sweep_kv_blocks(o.sw, static_cast<int64_t>(left / double(block)));
  }
  const uint64_t weight_bytes = weights.bytes();
  CudaBackend gpu(config, std::move(weights), bo);
  size_t free2 = 0;
  DS4_CUDA_CHECK(cudaMemGetInfo(&free2, &total));
  std::printf("KV (f32 rows): %.2f MB per 256-token block, %.2f MB per sequence slot; %.2f GiB free after the weights = "
              "%.2f M tokens of compressed KV (%.0f sequences of 4K at %.2f GB each)\n",
              block / 1e6, slot / 1e6, free1 / 1073741824.0, free1 / double(block) * 256 / 1e6,
              free1 / double(block * 16 + slot), (block * 16 + slot) / 1e9);
  std::printf("backend: %d slots, %lld blocks (%.2f GB); %.2f GiB free before the step scratch\n", bo.max_seqs,
              (long long)bo.kv_blocks, gpu.kv_bytes() / 1e9, free2 / 1073741824.0);
  std::fflush(stdout);
  if (o.sweep) {
    write_meta(o, prop.name, peak_gbs, weight_bytes, free1, bo, gpu.kv_bytes());
    SweepOptions sw = o.sw;
    sw.copy_peak_gbs = peak_gbs;
    std::printf("sweep: %d points measured\n", run_sweep(gpu, config, sw));
    return 0;
  }
  std::mt19937 rng(7);
  const auto start = Clock::now();
  for (int B : o.batches) {
    if (seconds_since(start) > o.time_limit_s) {
      std::printf("batch %d: skipped (time limit %.0f s)\n", B, o.time_limit_s);
      continue;
    }
    bench_batch(gpu, config, scheme, B, o.prompt, o.steps, peak_gbs, rng);
  }
  if (o.context > 0) {
    if (seconds_since(start) > o.time_limit_s) std::printf("context %d: skipped (time limit)\n", o.context);
    else bench_context(gpu, o.context, o.steps, rng);
  }
  return 0;
}

}  // namespace
}  // namespace ds4

int main(int argc, char** argv) {
  try {
    return ds4::run(ds4::parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_model_bench: error: %s\n", e.what());
    return 1;
  }
}
