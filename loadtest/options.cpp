// ds4serve-load command line (see options.h). Flags take "--flag value" or "--flag=value".
#include "loadtest/options.h"

#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <regex>
#include <sstream>

namespace ds4::loadtest {
namespace {

bool to_int(const std::string& s, int64_t* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  long long x = std::strtoll(s.c_str(), &end, 10);
  *v = x;
  return *end == '\0';
}

bool to_double(const std::string& s, double* v) {
  if (s.empty()) return false;
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return *end == '\0' && !std::isnan(*v);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) parts.push_back(item);
  return parts;
}

std::string positive_int(const std::string& flag, const std::string& v, int64_t lowest, int64_t* out) {
  if (!to_int(v, out) || *out < lowest)
    return flag + " needs an integer >= " + std::to_string(lowest) + ", got '" + v + "'";
  return "";
}

std::string positive_double(const std::string& flag, const std::string& v, double* out) {
  if (!to_double(v, out) || !(*out > 0))
    return flag + " needs a positive number, got '" + v + "'";
  return "";
}

using Handler = std::function<std::string(const std::string&)>;

using Handlers = std::map<std::string, Handler>;

void add_target_and_load_flags(Handlers& h, Options* o, bool* saw_conc, bool* saw_rate) {
  h["--url"] = [o](const std::string& v) { o->url = v; return std::string(); };
  h["--model"] = [o](const std::string& v) { o->workload.model = v; return std::string(); };
  h["--api-key"] = [o](const std::string& v) { o->api_key = v; return std::string(); };
  h["--endpoint"] = [o](const std::string& v) {
    if (v == "chat") o->workload.endpoint = Endpoint::kChat;
    else if (v == "completions") o->workload.endpoint = Endpoint::kCompletions;
    else return "--endpoint must be chat or completions, got '" + v + "'";
    return std::string();
  };
  h["--path"] = [o](const std::string& v) {
    if (v.empty() || v[0] != '/') return "--path must start with '/', got '" + v + "'";
    o->path = v;
    return std::string();
  };
  h["--concurrency"] = [o, saw_conc](const std::string& v) {
    *saw_conc = true;
    o->concurrency.clear();
    for (const std::string& p : split(v, ',')) {
      int64_t c = 0;
      if (std::string e = positive_int("--concurrency", p, 1, &c); !e.empty()) return e;
      o->concurrency.push_back(c);
    }
    return o->concurrency.empty() ? std::string("--concurrency needs a list like 1,2,4") : std::string();
  };
  h["--rate"] = [o, saw_rate](const std::string& v) {
    *saw_rate = true;
    o->rates.clear();
    for (const std::string& p : split(v, ',')) {
      double r = 0;
      if (std::string e = positive_double("--rate", p, &r); !e.empty()) return e;
      o->rates.push_back(r);
    }
    return o->rates.empty() ? std::string("--rate needs a list like 0.5,1,2") : std::string();
  };
  h["--burstiness"] = [o](const std::string& v) {
    if (v == "inf") { o->burstiness = INFINITY; return std::string(); }
    return positive_double("--burstiness", v, &o->burstiness);
  };
  h["--max-concurrency"] = [o](const std::string& v) { return positive_int("--max-concurrency", v, 1, &o->max_concurrency); };
  h["--requests"] = [o](const std::string& v) { return positive_int("--requests", v, 1, &o->requests); };
  h["--duration"] = [o](const std::string& v) { return positive_double("--duration", v, &o->duration_s); };
  h["--warmup"] = [o](const std::string& v) { return positive_int("--warmup", v, 0, &o->warmup); };
  h["--timeout"] = [o](const std::string& v) { return positive_double("--timeout", v, &o->timeout_s); };
}

void add_workload_and_output_flags(Handlers& h, Options* o) {
  h["--input-tokens"] = [o](const std::string& v) { return parse_length_spec(v, "--input-tokens", 1, &o->workload.input); };
  h["--output-tokens"] = [o](const std::string& v) { return parse_length_spec(v, "--output-tokens", 1, &o->workload.output); };
  h["--dataset"] = [o](const std::string& v) { o->workload.dataset_path = v; return std::string(); };
  h["--shared-prefix"] = [o](const std::string& v) {
    if (!to_double(v, &o->workload.shared_prefix) || o->workload.shared_prefix < 0 || o->workload.shared_prefix > 1)
      return "--shared-prefix needs a fraction in [0, 1], got '" + v + "'";
    return std::string();
  };
  h["--depth"] = [o](const std::string& v) { return positive_int("--depth", v, 0, &o->workload.depth_tokens); };
  h["--extra-body"] = [o](const std::string& v) { o->workload.extra_body = v; return std::string(); };
  h["--seed"] = [o](const std::string& v) {
    int64_t s = 0;
    if (std::string e = positive_int("--seed", v, 0, &s); !e.empty()) return e;
    o->workload.seed = static_cast<uint64_t>(s);
    return std::string();
  };
  h["--slo"] = [o](const std::string& v) { return parse_slo(v, &o->slo); };
  h["--metrics-path"] = [o](const std::string& v) { o->metrics_path = v; o->scrape_metrics = true; return std::string(); };
  h["--metrics-filter"] = [o](const std::string& v) {
    try {
      std::regex check(v);
    } catch (const std::regex_error&) {
      return "--metrics-filter '" + v + "' is not a valid regular expression";
    }
    o->metrics_filter = v;
    return std::string();
  };
  h["--out"] = [o](const std::string& v) { o->out_dir = v; return std::string(); };
  h["--json"] = [o](const std::string& v) { o->json_path = v; return std::string(); };
  h["--csv"] = [o](const std::string& v) { o->csv_path = v; return std::string(); };
  h["--plot"] = [o](const std::string& v) {
    if (v.find('\'') != std::string::npos) return std::string("--plot path must not contain a quote (');");
    o->plot_path = v;
    return std::string();
  };
  h["--requests-out"] = [o](const std::string& v) { o->requests_path = v; return std::string(); };
  h["--threads"] = [o](const std::string& v) {
    int64_t t = 0;
    if (std::string e = positive_int("--threads", v, 1, &t); !e.empty()) return e;
    if (t > 64) return std::string("--threads must be <= 64");
    o->threads = static_cast<int>(t);
    return std::string();
  };
  h["--progress"] = [o](const std::string& v) {
    if (v != "auto" && v != "always" && v != "never")
      return "--progress must be auto, always or never, got '" + v + "'";
    o->progress = v;
    return std::string();
  };
}

std::string finish(Options* o, bool saw_conc, bool saw_rate) {
  if (o->url.empty()) return "--url is required (e.g. --url http://127.0.0.1:8080)";
  if (std::string e = parse_target_url(o->url, &o->target); !e.empty()) return "--url: " + e;
  // Accept OpenAI-style base URLs ending in /v1: the endpoint paths below already carry /v1.
  if (o->target.base_path.size() >= 3 &&
      o->target.base_path.compare(o->target.base_path.size() - 3, 3, "/v1") == 0)
    o->target.base_path.resize(o->target.base_path.size() - 3);
  if (saw_conc && saw_rate) return "give either --concurrency (closed loop) or --rate (open loop), not both";
  if (saw_rate) o->mode = LoadMode::kOpen;
  if (o->mode == LoadMode::kClosed && o->max_concurrency > 0)
    return "--max-concurrency caps the open loop; use it with --rate";
  if (o->path.empty())
    o->path = o->workload.endpoint == Endpoint::kChat ? "/v1/chat/completions" : "/v1/completions";
  if (!o->out_dir.empty()) {
    std::string d = o->out_dir + "/";
    if (o->json_path.empty()) o->json_path = d + "results.json";
    if (o->csv_path.empty()) o->csv_path = d + "results.csv";
    if (o->plot_path.empty()) o->plot_path = d + "results.png";
    if (o->requests_path.empty()) o->requests_path = d + "requests.jsonl";
  }
  return "";
}

}  // namespace

std::string parse_options(const std::vector<std::string>& args, const std::string& env_key, Options* out) {
  *out = Options{};
  out->api_key = env_key;
  bool saw_conc = false, saw_rate = false;
  Handlers h;
  add_target_and_load_flags(h, out, &saw_conc, &saw_rate);
  add_workload_and_output_flags(h, out);
  for (size_t i = 1; i < args.size(); ++i) {
    std::string flag = args[i], value;
    bool has_value = false;
    if (size_t eq = flag.find('='); eq != std::string::npos && flag.rfind("--", 0) == 0) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    if (flag == "-h" || flag == "--help") { out->show_help = true; return ""; }
    if (flag == "--ignore-eos") { out->workload.ignore_eos = true; continue; }
    if (flag == "--metrics") { out->scrape_metrics = true; continue; }
    if (flag == "--fail-on-error") { out->fail_on_error = true; continue; }
    auto it = h.find(flag);
    if (it == h.end()) return "unknown option '" + flag + "' (see --help)";
    if (!has_value) {
      if (i + 1 >= args.size()) return flag + " needs a value";
      value = args[++i];
    }
    if (std::string e = it->second(value); !e.empty()) return e;
  }
  return finish(out, saw_conc, saw_rate);
}

int64_t default_requests(const Options& o, int64_t concurrency, double rate_per_s) {
  if (o.requests > 0) return o.requests;
  if (o.duration_s > 0) return 0;
  if (o.mode == LoadMode::kClosed) return std::max<int64_t>(8, 4 * concurrency);
  return std::max<int64_t>(8, static_cast<int64_t>(std::ceil(10.0 * rate_per_s)));
}

std::string usage_text() {
  return R"(ds4serve-load: load tester for OpenAI-compatible streaming servers.

usage: ds4serve-load --url http://HOST:PORT [options]

target
  --url URL               server root (http only; a trailing /v1 is accepted)
  --model NAME            model name to send (default: the first id from GET /v1/models)
  --api-key KEY           bearer token (default: $DS4_API_KEY, then $OPENAI_API_KEY)
  --endpoint chat|completions   /v1/chat/completions (default) or /v1/completions
  --path /P               other endpoint path

load (one level per listed value)
  --concurrency 1,2,4     closed loop: that many users, each sends its next request when the
                          previous one ends (default 1)
  --rate 0.5,1,2          open loop: requests per second, arrivals from a gamma process
  --burstiness B          open loop gamma shape: 1 = Poisson (default), <1 burstier, inf = even
  --max-concurrency N     open loop: cap on requests in flight; arrivals over it wait (queue time)
  --requests N            requests per level (default: closed 4 x concurrency, at least 8;
                          open 10 s worth of the rate, at least 8; none when --duration is given)
  --duration S            stop issuing after S seconds per level (requests in flight finish)
  --warmup N              requests sent before the first level and not measured (default 1)
  --timeout S             per-request deadline in seconds (default 300)
  --threads N             io threads (default 1; one thread drives hundreds of streams)

workload
  --input-tokens N|A:B    prompt length in tokens, fixed or uniform in [A, B] (default 128)
  --output-tokens N|A:B   max_tokens, fixed or uniform (default 128)
  --ignore-eos            send "ignore_eos": true so every output runs to max_tokens
  --depth N               N tokens of context before the prompt (chat: a system message)
  --shared-prefix F       fraction of depth+prompt identical across requests (prefix caching)
  --dataset FILE.jsonl    lines {"prompt": "..."} or {"messages": [...]}, optional "max_tokens"
  --extra-body JSON       object merged into every request body, e.g. '{"temperature":0}'
  --seed N                seed of prompts and arrivals (default 1)

measurement and output
  --slo ttft:MS,tpot:MS,e2e:MS   goodput counts requests meeting every given objective
  --metrics               scrape /metrics before and after each level
  --metrics-path /P       other metrics path (implies --metrics)
  --metrics-filter REGEX  server series shown on the terminal (all go to JSON)
  --out DIR               write DIR/results.json, results.csv, results.png, requests.jsonl
  --json F, --csv F, --plot F.png, --requests-out F.jsonl   individual outputs
  --progress auto|always|never   progress bar on stderr (auto: when it is a terminal)
  --fail-on-error         exit 3 when any measured request failed

Ctrl-C stops issuing, cancels requests in flight and writes what was measured (exit 130).
)";
}

}  // namespace ds4::loadtest
