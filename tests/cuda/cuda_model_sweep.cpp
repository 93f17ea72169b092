// run_sweep (see cuda_model_sweep.h): decode points over contexts × batches, prefill points over
// depths; one CSV row per point, written as soon as it is measured (a killed run keeps its rows).
#include "cuda_model_sweep.h"

#include <cuda_profiler_api.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <stdexcept>
#include <string>

namespace ds4 {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

using Sequences = std::vector<std::unique_ptr<CudaSequenceKv>>;

// B sequences of the backend's own pool at `position`, with room for `room` more tokens; empty
// when the pool has too few slots or blocks (the partial ones are freed).
Sequences place_sequences(CudaBackend& gpu, int batch, int64_t position, int64_t room) {
  Sequences kv;
  for (int s = 0; s < batch; ++s) {
    auto seq = gpu.new_sequence();
    if (!seq || !seq->reserve(position + room)) return {};
    seq->set_num_tokens(position);  // rows up to here hold zeros: same reads as after a prefill
    kv.push_back(std::move(seq));
  }
  return kv;
}

std::vector<int32_t> random_tokens(std::mt19937& rng, size_t n) {
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(100 + rng() % 100000);
  return t;
}

struct StepResult {
  double ms = 0;
  int64_t weight_bytes = 0, experts = 0;
  std::vector<int32_t> next;  // greedy token per sequence
};

// One forward over the sequences (each fed its `tokens` chunk, logits left on the device) and a
// greedy draw on the device: the engine's step without the scheduler.
StepResult timed_step(CudaBackend& gpu, Sequences& kv, const std::vector<std::vector<int32_t>>& tokens) {
  ForwardBatch b;
  b.host_logits = false;
  for (size_t s = 0; s < kv.size(); ++s) b.sequences.push_back({kv[s].get(), tokens[s], false});
  const auto t0 = Clock::now();
  const ForwardOutput out = gpu.forward(b);
  const std::vector<RowSampling> greedy(kv.size(), RowSampling{SamplingParams{.temperature = 0.0f}, 0});
  StepResult r;
  r.next = gpu.sample_rows(greedy);
  r.ms = seconds_since(t0) * 1e3;
  r.weight_bytes = out.weight_bytes_read;
  r.experts = out.unique_experts;
  return r;
}

StepResult profiled_step(CudaBackend& gpu, Sequences& kv, const std::vector<std::vector<int32_t>>& tokens) {
  StepResult r;
  profile_region([&] { r = timed_step(gpu, kv, tokens); });
  return r;
}

struct Summary {
  double median = 0, mean = 0, min = 0;
};
Summary summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  s.min = v.front();
  return s;
}

FILE* open_csv(const SweepOptions& o, const char* name, const char* header) {
  const std::string path = o.out_dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) throw std::runtime_error("cannot write " + path);
  std::fprintf(f, "%s\n", header);
  std::fflush(f);
  return f;
}

constexpr const char* kDecodeHeader =
    "context,batch,status,steps,step_ms_median,step_ms_mean,step_ms_min,agg_tok_s,per_user_tok_s,"
    "weight_bytes_per_step,unique_experts_per_step,weight_gb_s,frac_copy_peak";
constexpr const char* kPrefillHeader = "depth,chunk,status,reps,ms_first,ms_min,ms_median,tok_s_best";

void decode_point(CudaBackend& gpu, const SweepOptions& o, int context, int batch, std::mt19937& rng, FILE* csv) {
  Sequences kv = place_sequences(gpu, batch, context, o.steps + 2);
  if (kv.empty()) {
    std::fprintf(csv, "%d,%d,no_fit,0,,,,,,,,,\n", context, batch);
    std::printf("decode context %6d batch %3d: does not fit the KV pool\n", context, batch);
    return;
  }
  std::vector<std::vector<int32_t>> tokens(batch);
  for (auto& t : tokens) t = random_tokens(rng, 1);
  StepResult warm = timed_step(gpu, kv, tokens);  // scratch sized for this batch
  std::vector<double> ms;
  double bytes = 0, experts = 0;
  const auto t0 = Clock::now();
  for (int i = 0; i < o.steps && (i == 0 || seconds_since(t0) < o.point_time_s); ++i) {
    for (int s = 0; s < batch; ++s) tokens[s].assign(1, warm.next[s]);
    warm = timed_step(gpu, kv, tokens);
    ms.push_back(warm.ms);
    bytes += double(warm.weight_bytes), experts += double(warm.experts);
  }
  if (profile_step_wanted()) {
    for (int s = 0; s < batch; ++s) tokens[s].assign(1, warm.next[s]);
    profiled_step(gpu, kv, tokens);
  }
  const Summary t = summarize(ms);
  const double n = double(ms.size()), step_bytes = bytes / n, gbs = step_bytes / 1e9 / (t.median / 1e3);
  const double frac = o.copy_peak_gbs > 0 ? gbs / o.copy_peak_gbs : 0;
  std::fprintf(csv, "%d,%d,ok,%zu,%.3f,%.3f,%.3f,%.2f,%.3f,%.0f,%.1f,%.1f,%.4f\n", context, batch, ms.size(), t.median,
               t.mean, t.min, batch * 1e3 / t.median, 1e3 / t.median, step_bytes, experts / n, gbs, frac);
  std::printf("decode context %6d batch %3d: step %.2f ms (median of %zu) = %.1f tok/s aggregate, %.2f per user; "
              "weights read %.2f GB/step (%.0f experts) = %.0f GB/s, %.1f%% of copy peak\n",
              context, batch, t.median, ms.size(), batch * 1e3 / t.median, 1e3 / t.median, step_bytes / 1e9,
              experts / n, gbs, 100 * frac);
}

void prefill_point(CudaBackend& gpu, const SweepOptions& o, int depth, std::mt19937& rng, FILE* csv) {
  std::vector<double> ms;
  const auto t0 = Clock::now();
  for (int rep = 0; rep < o.prefill_reps && (rep == 0 || seconds_since(t0) < o.point_time_s); ++rep) {
    Sequences kv = place_sequences(gpu, 1, depth, o.prefill_chunk + 1);
    if (kv.empty()) break;
    ms.push_back(timed_step(gpu, kv, {random_tokens(rng, static_cast<size_t>(o.prefill_chunk))}).ms);
  }
  if (!ms.empty() && profile_step_wanted()) {
    Sequences kv = place_sequences(gpu, 1, depth, o.prefill_chunk + 1);
    if (!kv.empty()) profiled_step(gpu, kv, {random_tokens(rng, static_cast<size_t>(o.prefill_chunk))});
  }
  if (ms.empty()) {
    std::fprintf(csv, "%d,%d,no_fit,0,,,,\n", depth, o.prefill_chunk);
    std::printf("prefill depth %6d: does not fit the KV pool\n", depth);
    return;
  }
  const Summary t = summarize(ms);
  std::fprintf(csv, "%d,%d,ok,%zu,%.3f,%.3f,%.3f,%.1f\n", depth, o.prefill_chunk, ms.size(), ms.front(), t.min, t.median,
               o.prefill_chunk * 1e3 / t.min);
  std::printf("prefill depth %6d chunk %d: %.1f ms first, %.1f ms best of %zu = %.0f tok/s (chunk + first token)\n",
              depth, o.prefill_chunk, ms.front(), t.min, ms.size(), o.prefill_chunk * 1e3 / t.min);
}

}  // namespace

bool profile_step_wanted() {
  const char* v = std::getenv("DS4_PROFILE_STEP");
  return v && std::string(v) == "1";
}

void profile_region(const std::function<void()>& work) {
  cudaDeviceSynchronize();
  cudaProfilerStart();
  work();
  cudaDeviceSynchronize();
  cudaProfilerStop();
}

int64_t sweep_kv_blocks(const SweepOptions& o, int64_t budget_blocks) {
  int64_t need = 0;
  auto blocks = [](int64_t tokens) { return (tokens + 255) / 256; };
  for (int ctx : o.contexts)
    for (int b : o.batches)
      if (b * blocks(ctx + o.steps + 2) <= budget_blocks) need = std::max(need, b * blocks(ctx + o.steps + 2));
  for (int d : o.prefill_depths) need = std::max(need, blocks(d + o.prefill_chunk + 1));
  return std::max<int64_t>(std::min(need, budget_blocks), 1);
}

int run_sweep(CudaBackend& gpu, const ModelConfig&, const SweepOptions& o) {
  std::mt19937 rng(static_cast<uint32_t>(o.seed));
  FILE* decode = open_csv(o, "decode.csv", kDecodeHeader);
  FILE* prefill = open_csv(o, "prefill.csv", kPrefillHeader);
  const auto start = Clock::now();
  int measured = 0;
  auto out_of_time = [&] { return seconds_since(start) > o.time_limit_s; };
  // Prefill first: the 2K-token chunk at depth 0 is also the idle server's time to first token.
  {
    Sequences warm = place_sequences(gpu, 1, 0, 65);  // small warm-up: kernels loaded, plan buffers made
    if (!warm.empty()) timed_step(gpu, warm, {random_tokens(rng, 64)});
  }
  for (int depth : o.prefill_depths) {
    if (out_of_time()) {
      std::fprintf(prefill, "%d,%d,skipped_time,0,,,,\n", depth, o.prefill_chunk);
    } else {
      prefill_point(gpu, o, depth, rng, prefill);
      ++measured;
    }
    std::fflush(prefill), std::fflush(stdout);
  }
  for (int ctx : o.contexts)
    for (int b : o.batches) {
      if (out_of_time()) {
        std::fprintf(decode, "%d,%d,skipped_time,0,,,,,,,,,\n", ctx, b);
        std::printf("decode context %6d batch %3d: skipped (time limit %.0f s)\n", ctx, b, o.time_limit_s);
      } else {
        decode_point(gpu, o, ctx, b, rng, decode);
        ++measured;
      }
      std::fflush(decode), std::fflush(stdout);
    }
  std::fclose(decode);
  std::fclose(prefill);
  return measured;
}

}  // namespace ds4
