// ds4serve-bench's command line: the options of both modes (all requests at once, or the closed
// loop of --users levels), the usage text and the parser. parse_bench_options() throws LoadError
// naming the bad option; it never exits except for --help. Used by ds4serve_bench.cpp and the
// closed loop (closed_loop.cpp); tested through the binary by tests/unit/scheduler_bench_cli_test.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "scheduler/speculator.h"

namespace ds4 {

struct BenchOptions {
  std::string model = DS4_DEMO_MODEL_PATH;
  int requests = 16;
  int prompt_min = 128, prompt_max = 128;
  int output_len = 32;
  int shared_prefix = 0;
  int max_num_seqs = 0;  // 0: requests (all at once) or the largest --users level (closed loop)
  int64_t max_batched_tokens = 512;
  int64_t chunk = 0;
  int64_t kv_blocks = 0;
  int kv_slots = 0;  // 0: max_num_seqs
  int threads = 0;
  float temperature = 0.0f;
  uint64_t seed = 1;  // prompts and sampling; with --synth also the weights' seed (as ds4serve --seed)
  std::string backend = "cpu";
  std::string mtp;          // MTP GGUF ("" : none)
  int mtp_draft = 3;
  double mtp_oracle = -1;   // < 0: no oracle
  bool mtp_adaptive = true;
  MtpPairing mtp_pairing = MtpPairing::kNextToken;
  // The synthetic model generated in GPU memory (ds4serve --synth): preset name ("": read --model).
  std::string synth_preset;
  std::string synth_quant = "q2";
  // The CUDA engine of ds4serve (http/cuda/cuda_engine_factory.h): device memory kept free for
  // the step scratch, and an optional cap on the KV pool (0: everything else).
  double device_reserve_gib = 6;
  double kv_memory_gib = 0;
  // Closed loop (empty users: every request at once): one level per entry, each user sending its
  // next request when the previous one finished, for level_time_s seconds; warm-up requests first.
  std::vector<int> users;
  double level_time_s = 20;
  int warmup_requests = 0;
  std::vector<std::string> out_files;  // .json / .csv reports of the closed loop (ds4serve-load's format)

  bool speculative() const { return !mtp.empty() || mtp_oracle >= 0; }
  bool closed_loop() const { return !users.empty(); }
};

extern const char* const kBenchUsage;

// Throws LoadError naming the problem; prints the usage and exits 0 for -h / --help.
BenchOptions parse_bench_options(int argc, char** argv);

// "1,2,4,8" -> {1, 2, 4, 8}; throws LoadError unless every item is a whole number >= 1.
std::vector<int> parse_user_levels(const std::string& text);

}  // namespace ds4
