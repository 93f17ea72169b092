// ds4serve-bench's command line (see bench_options.h).
#include "scheduler/tools/bench_options.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "engine/load_error.h"
#include "engine/model_layout.h"

namespace ds4 {

const char* const kBenchUsage =
    "usage: ds4serve-bench [--model FILE | --synth PRESET [--quant Q]] [--requests N] [--prompt-len P | --prompt-range MIN:MAX]\n"
    "                      [--output-len O] [--shared-prefix L] [--max-num-seqs S] [--max-batched-tokens T]\n"
    "                      [--chunk C] [--kv-blocks B] [--kv-slots S] [--threads N] [--temperature T] [--seed S]\n"
    "                      [--backend cpu|cuda] [--device-reserve GIB] [--kv-memory GIB]\n"
    "                      [--users U1,U2,... [--level-time S] [--warmup-requests N] [--out FILE.json|FILE.csv]...]\n"
    "                      [--mtp FILE] [--mtp-draft K] [--mtp-oracle RATE] [--mtp-policy adaptive|fixed] [--mtp-pairing next|same]\n"
    "  Default: N requests arrive together; prompts are random token ids (the first L shared), outputs ignore EOS.\n"
    "  --users U1,U2,...  closed loop instead: for each level U users each submit a request, wait for it to\n"
    "               finish and submit the next (new random prompt ids, so the prefix cache cannot help), for\n"
    "               --level-time S seconds (default 20; requests in flight then run to the end); reports the\n"
    "               measures of ds4serve-load (output tok/s over the level, TTFT, ITL, TPOT, requests) from the\n"
    "               engine's stream timestamps; --warmup-requests N before the first level (default 0);\n"
    "               --out FILE writes them as ds4serve-load's JSON (.json) or CSV (.csv); may be repeated.\n"
    "  --synth PRESET  (--backend cuda) the synthetic model of PRESET (tiny, small, full) generated in GPU memory as\n"
    "               ds4serve --synth does (no file); --quant q2|q4|q8_0|f16|f32 (default q2); --seed also seeds it.\n"
    "  --backend cuda  with --synth or --users: ds4serve's CUDA engine (paged pool with prefix caching in device\n"
    "               memory, sized from what is free but --device-reserve GIB (default 6), capped by --kv-memory GIB);\n"
    "               otherwise the backend's own device KV of --kv-blocks (no prefix cache).\n"
    "  --kv-blocks  paged pool size in 256-token blocks (default: room for every request at once)\n"
    "  --mtp FILE   speculative decoding with this MTP draft module (CPU or CUDA backend); --mtp-draft K (default 3)\n"
    "  --mtp-oracle RATE  (greedy) a first pass without speculation records every request's tokens; the\n"
    "               measured pass forces each draft to the right token with probability RATE (with --mtp the\n"
    "               MTP still runs, for its cost; without it drafts are free). Prints both passes.\n"
    "  --mtp-policy adaptive: K per step from batch size and measured acceptance (default); fixed: always K\n"
    "  --mtp-pairing next: state i with token i+1 (paper, default); same: state i with token i (ds4)\n";

namespace {

long long parse_int(const char* s, const char* what) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s, &end, 10);
  if (end == s || *end || errno || v < 0) throw LoadError(std::string(what) + ": '" + s + "' is not a count");
  return v;
}

// A finite number > 0 (seconds, GiB).
double parse_positive(const char* s, const char* what) {
  char* end = nullptr;
  const double v = std::strtod(s, &end);
  if (end == s || *end || !std::isfinite(v) || v <= 0)
    throw LoadError(std::string(what) + ": '" + s + "' is not a number > 0");
  return v;
}

void parse_prompt_range(BenchOptions& o, const std::string& s) {
  const size_t colon = s.find(':');
  if (colon == std::string::npos) throw LoadError("--prompt-range wants MIN:MAX");
  o.prompt_min = int(parse_int(s.substr(0, colon).c_str(), "--prompt-range"));
  o.prompt_max = int(parse_int(s.substr(colon + 1).c_str(), "--prompt-range"));
}

// The speculative-decoding options; false when `a` is none of them.
bool parse_mtp_option(BenchOptions& o, const std::string& a, const char* v) {
  if (a == "--mtp") o.mtp = v;
  else if (a == "--mtp-draft") o.mtp_draft = int(parse_int(v, "--mtp-draft"));
  else if (a == "--mtp-oracle") {
    char* end = nullptr;
    o.mtp_oracle = std::strtod(v, &end);
    if (end == v || *end || !(o.mtp_oracle >= 0.0 && o.mtp_oracle <= 1.0)) throw LoadError("--mtp-oracle wants a rate in [0, 1]");
  }
  else if (a == "--mtp-policy") {
    if (std::string(v) != "adaptive" && std::string(v) != "fixed") throw LoadError("--mtp-policy must be adaptive or fixed");
    o.mtp_adaptive = std::string(v) == "adaptive";
  }
  else if (a == "--mtp-pairing") {
    if (!parse_pairing(v, o.mtp_pairing)) throw LoadError("--mtp-pairing must be next or same");
  }
  else return false;
  return true;
}

// The synthetic model, the device engine and the closed loop; false when `a` is none of them.
bool parse_new_option(BenchOptions& o, const std::string& a, const char* v) {
  if (a == "--synth") o.synth_preset = v;
  else if (a == "--quant") o.synth_quant = v;
  else if (a == "--device-reserve") o.device_reserve_gib = parse_positive(v, "--device-reserve");
  else if (a == "--kv-memory") o.kv_memory_gib = parse_positive(v, "--kv-memory");
  else if (a == "--users") o.users = parse_user_levels(v);
  else if (a == "--level-time") o.level_time_s = parse_positive(v, "--level-time");
  else if (a == "--warmup-requests") o.warmup_requests = int(parse_int(v, "--warmup-requests"));
  else if (a == "--out") o.out_files.push_back(v);
  else return false;
  return true;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

void check_closed_loop(const BenchOptions& o, bool level_time_given, bool warmup_given) {
  if (!o.closed_loop()) {
    if (level_time_given || warmup_given || !o.out_files.empty())
      throw LoadError("--level-time, --warmup-requests and --out belong to the closed loop: give --users U1,U2,...");
    return;
  }
  if (o.mtp_oracle >= 0) throw LoadError("--mtp-oracle runs the all-at-once mode only (leave out --users)");
  for (const std::string& f : o.out_files)
    if (!ends_with(f, ".json") && !ends_with(f, ".csv"))
      throw LoadError("--out '" + f + "': the file name must end in .json or .csv");
}

void check_synth(const BenchOptions& o) {
  if (o.synth_preset.empty()) return;
  if (o.backend != "cuda")
    throw LoadError("--synth generates the weights in GPU memory: it needs --backend cuda");
  if (!quant_scheme_from_name(o.synth_quant))
    throw LoadError("--quant: '" + o.synth_quant + "' is not one of q2, q4, q8_0, f16, f32");
}

void finish_defaults(BenchOptions& o) {
  if (o.max_num_seqs == 0) {
    int largest = 0;
    for (int u : o.users) largest = std::max(largest, u);
    o.max_num_seqs = o.closed_loop() ? largest : o.requests;
  }
  if (o.kv_slots == 0) o.kv_slots = o.max_num_seqs;
}

}  // namespace

std::vector<int> parse_user_levels(const std::string& text) {
  std::vector<int> levels;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t comma = std::min(text.find(',', begin), text.size());
    const std::string item = text.substr(begin, comma - begin);
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end || errno || v < 1 || v > 65536)
      throw LoadError("--users: '" + item + "' in '" + text + "' is not a number of users in [1, 65536]");
    levels.push_back(int(v));
    begin = comma + 1;
  }
  return levels;
}

BenchOptions parse_bench_options(int argc, char** argv) {
  BenchOptions o;
  bool level_time_given = false, warmup_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") { std::fputs(kBenchUsage, stdout); std::exit(0); }
    if (i + 1 >= argc) throw LoadError("option " + a + " needs a value");
    const char* v = argv[++i];
    level_time_given = level_time_given || a == "--level-time";
    warmup_given = warmup_given || a == "--warmup-requests";
    if (a == "--model" || a == "-m") o.model = v;
    else if (a == "--requests" || a == "-n") o.requests = int(parse_int(v, "--requests"));
    else if (a == "--prompt-len") o.prompt_min = o.prompt_max = int(parse_int(v, "--prompt-len"));
    else if (a == "--prompt-range") parse_prompt_range(o, v);
    else if (a == "--output-len") o.output_len = int(parse_int(v, "--output-len"));
    else if (a == "--shared-prefix") o.shared_prefix = int(parse_int(v, "--shared-prefix"));
    else if (a == "--max-num-seqs") o.max_num_seqs = int(parse_int(v, "--max-num-seqs"));
    else if (a == "--max-batched-tokens") o.max_batched_tokens = parse_int(v, "--max-batched-tokens");
    else if (a == "--chunk") o.chunk = parse_int(v, "--chunk");
    else if (a == "--kv-blocks") o.kv_blocks = parse_int(v, "--kv-blocks");
    else if (a == "--kv-slots") o.kv_slots = int(parse_int(v, "--kv-slots"));
    else if (a == "--threads") o.threads = int(parse_int(v, "--threads"));
    else if (a == "--temperature") o.temperature = std::strtof(v, nullptr);
    else if (a == "--seed") o.seed = parse_int(v, "--seed");
    else if (a == "--backend") o.backend = v;
    else if (parse_mtp_option(o, a, v) || parse_new_option(o, a, v)) continue;
    else throw LoadError("unknown option " + a);
  }
  if (o.requests < 1 || o.output_len < 1) throw LoadError("--requests and --output-len must be >= 1");
  if (o.prompt_min < 1 || o.prompt_max < o.prompt_min) throw LoadError("--prompt-range needs 1 <= MIN <= MAX");
  if (o.shared_prefix > o.prompt_min) throw LoadError("--shared-prefix must not exceed the shortest prompt");
  if (o.backend != "cpu" && o.backend != "cuda") throw LoadError("--backend must be cpu or cuda");
  if (o.mtp_draft < 1 || o.mtp_draft > 16) throw LoadError("--mtp-draft must be in [1, 16]");
  if (o.mtp_oracle >= 0 && o.temperature > 0) throw LoadError("--mtp-oracle measures greedy decoding (--temperature 0)");
  check_synth(o);
  check_closed_loop(o, level_time_given, warmup_given);
  finish_defaults(o);
  return o;
}

}  // namespace ds4
