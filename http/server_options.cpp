// ds4serve command-line parsing (see server_options.h).
#include "http/server_options.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "engine/load_error.h"

namespace ds4::http {

const char* const kServerUsage =
    "usage: ds4serve [--model FILE] [--host ADDR] [--port N] [--api-key KEY ...] [--ctx N]\n"
    "                [--max-num-seqs N] [--max-num-batched-tokens N] [--kv-memory GIB]\n"
    "                [--served-model-name NAME] [--cors-origin ORIGIN ...] [--threads N]\n"
    "                [--io-threads N] [--reasoning-effort none|high|max] [--max-body-bytes N]\n"
    "                [--read-timeout S] [--heartbeat S] [--drain-timeout S] [--mtp FILE [--mtp-draft K]]\n"
    "                [limits and access: see below]\n"
    "                [--backend cpu|cuda] [--synth PRESET [--quant Q] [--seed N]] [--device-reserve GIB]\n"
    "  --model FILE              GGUF to serve (default: the built-in demo model)\n"
    "  --backend B               cpu (default) or cuda (one GPU; weights, KV pool and sampling on the device)\n"
    "  --synth PRESET            serve the synthetic model of PRESET (tiny, small, full) generated in GPU\n"
    "                            memory, as `ds4serve-model synth` would write it (needs --backend cuda;\n"
    "                            --model then only supplies the tokenizer)\n"
    "  --quant Q, --seed N       the synthetic model's quantisation (q2, q4, q8_0, f16, f32; default q2) and seed (1)\n"
    "  --device-reserve GIB      device memory left free for the step scratch (default 6); the KV pool takes the\n"
    "                            rest, or --kv-memory GIB when smaller\n"
    "  --api-key KEY             require 'Authorization: Bearer KEY' on /v1/*, /tokenize, /detokenize\n"
    "                            (repeatable; also read from DS4SERVE_API_KEY)\n"
    "  --ctx N                   most prompt + output tokens per request (default: the model's)\n"
    "  --kv-memory GIB           KV-cache budget in GiB (default: room for every sequence at full context)\n"
    "  --cors-origin ORIGIN      allow browser requests from ORIGIN ('*' for any; repeatable)\n"
    "  --threads N               CPU backend threads (default: all cores)\n"
    "  --reasoning-effort E      default for chat requests that do not choose (default: high)\n"
    "  --mtp FILE                MTP draft module (mtp.0.* GGUF): speculative decoding, exact (CPU and\n"
    "                            CUDA); with --synth, `--mtp synth` generates the synthetic MTP module\n"
    "                            (seed: --seed + 1)\n"
    "  --mtp-draft K             most draft tokens per sequence and step (default 3; K is adapted\n"
    "                            per step, 0 included, from batch size and measured acceptance)\n";

namespace {

int64_t parse_int(const std::string& opt, const std::string& v, int64_t lo, int64_t hi) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno || x < lo || x > hi)
    throw LoadError(opt + ": '" + v + "' is not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

double parse_double(const std::string& opt, const std::string& v, double lo, double hi) {
  char* end = nullptr;
  errno = 0;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end || errno || !std::isfinite(x) || x < lo || x > hi)
    throw LoadError(opt + ": '" + v + "' is not a number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

// Options that take a value; returns false when `opt` is not one of them.
bool apply(ServerOptions& o, const std::string& opt, const std::string& v) {
  constexpr int64_t kMaxI32 = std::numeric_limits<int32_t>::max();
  ServiceOptions& s = o.service;
  HttpLimits& l = o.limits;
  if (opt == "--model" || opt == "-m") s.model_path = v;
  else if (opt == "--host") o.host = v;
  else if (opt == "--port") o.port = static_cast<uint16_t>(parse_int(opt, v, 0, 65535));
  else if (opt == "--api-key") o.api_keys.push_back(v);
  else if (opt == "--ctx") s.ctx = parse_int(opt, v, 2, kMaxI32);
  else if (opt == "--max-num-seqs") s.max_num_seqs = static_cast<int>(parse_int(opt, v, 1, 65536));
  else if (opt == "--max-num-batched-tokens") s.max_num_batched_tokens = parse_int(opt, v, 1, kMaxI32);
  else if (opt == "--kv-memory") s.kv_memory_gib = parse_double(opt, v, 1e-6, 1e6);
  else if (opt == "--served-model-name") s.served_model_name = v;
  else if (opt == "--backend") s.backend = v;
  else if (opt == "--synth") s.synth_preset = v;
  else if (opt == "--quant") s.synth_quant = v;
  else if (opt == "--seed") s.synth_seed = static_cast<uint64_t>(parse_int(opt, v, 0, std::numeric_limits<int64_t>::max()));
  else if (opt == "--device-reserve") s.device_reserve_gib = parse_double(opt, v, 0, 1e6);
  else if (opt == "--mtp") s.mtp_path = v;
  else if (opt == "--max-waiting") s.max_waiting = static_cast<int>(parse_int(opt, v, 0, 1 << 20));
  else if (opt == "--mtp-draft") s.mtp_draft = static_cast<int>(parse_int(opt, v, 1, 16));
  else if (opt == "--cors-origin") o.cors_origins.push_back(v);
  else if (opt == "--threads") s.cpu_threads = static_cast<int>(parse_int(opt, v, 0, 4096));
  else if (opt == "--io-threads") o.io_threads = static_cast<int>(parse_int(opt, v, 1, 256));
  else if (opt == "--max-body-bytes") l.max_body_bytes = static_cast<uint64_t>(parse_int(opt, v, 1024, 1ll << 40));
  else if (opt == "--read-timeout") l.read_timeout_seconds = static_cast<int>(parse_int(opt, v, 1, 86400));
  else if (opt == "--heartbeat") l.heartbeat_ms = static_cast<int>(parse_double(opt, v, 0.01, 3600) * 1000);
  else if (opt == "--drain-timeout") l.drain_timeout_seconds = static_cast<int>(parse_int(opt, v, 0, 86400));
  else if (opt == "--reasoning-effort") {
    const auto e = parse_reasoning_effort(v);
    if (!e) throw LoadError("--reasoning-effort: '" + v + "' is not one of none, low, medium, high, max");
    s.default_effort = *e;
  } else if (!apply_parallel_option(o.parallel, opt, v)) {
    return apply_hardening_option(o, opt, v);
  }
  return true;
}

}  // namespace

int64_t parse_int_option(const std::string& opt, const std::string& v, int64_t lo, int64_t hi) {
  return parse_int(opt, v, lo, hi);
}

ServerOptions parse_server_options(const std::vector<std::string>& args, const std::string& default_model,
                                   bool& help) {
  ServerOptions o;
  help = false;
  o.service.model_path = default_model;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string opt = args[i], value;
    const size_t eq = opt.find('=');
    const bool inline_value = opt.rfind("--", 0) == 0 && eq != std::string::npos;
    if (inline_value) value = opt.substr(eq + 1), opt = opt.substr(0, eq);
    if (opt == "-h" || opt == "--help") {
      help = true;
      return o;
    }
    if (!inline_value && apply_hardening_switch(o.hardening, opt)) continue;
    if (!inline_value) {
      if (i + 1 >= args.size()) {
        const bool known = (std::string(kServerUsage) + kHardeningUsage + kParallelUsage).find(opt + " ") != std::string::npos;
        throw LoadError(known ? "option " + opt + " needs a value" : "unknown option " + opt + " (see --help)");
      }
      value = args[i + 1];
    }
    if (!apply(o, opt, value)) throw LoadError("unknown option " + opt + " (see --help)");
    if (!inline_value) ++i;
  }
  if (o.service.model_path.empty()) throw LoadError("--model: no model file given");
  if (o.service.backend != "cpu" && o.service.backend != "cuda")
    throw LoadError("--backend: '" + o.service.backend + "' is not one of cpu, cuda");
  if (!o.service.synth_preset.empty() && o.service.backend != "cuda")
    throw LoadError("--synth generates the weights in GPU memory: it needs --backend cuda");
  if (o.service.mtp_path == kSynthMtp && o.service.synth_preset.empty())
    throw LoadError("--mtp synth generates the synthetic model's MTP module: it needs --synth PRESET");
  check_parallel_options(o.parallel, o.service.backend);
  if (const char* key = std::getenv("DS4SERVE_API_KEY"); key && *key) o.api_keys.emplace_back(key);
  for (const std::string& k : o.api_keys)
    if (k.empty()) throw LoadError("--api-key: an API key must not be empty");
  check_hardening_options(o.hardening, !o.api_keys.empty());
  return o;
}

}  // namespace ds4::http
