// Command line of ds4serve-load: parsing and validation into Options, and the --help text.
// Every bad value gives an error that names the flag and what it needs; nothing here does I/O.
// Used by main.cpp; tested in loadtest_options_test.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loadtest/http_client.h"
#include "loadtest/runner.h"
#include "loadtest/stats.h"
#include "loadtest/workload.h"

namespace ds4::loadtest {

struct Options {
  std::string url;              // server root, e.g. http://127.0.0.1:8080 (a trailing /v1 is dropped)
  Target target;
  std::string api_key;          // --api-key, else $DS4_API_KEY, else $OPENAI_API_KEY
  std::string path;             // endpoint path (from --endpoint unless --path)
  LoadMode mode = LoadMode::kClosed;
  std::vector<int64_t> concurrency{1};  // closed-loop sweep
  std::vector<double> rates;            // open-loop request rates (per second)
  double burstiness = 1;
  int64_t max_concurrency = 0;          // open-loop cap (0: none)
  int64_t requests = 0;                 // per level; 0: the default for the mode (see --help)
  double duration_s = 0;                // per level; 0: no time bound
  int64_t warmup = 1;                   // warm-up requests before the first level
  double timeout_s = 300;               // per request
  WorkloadSpec workload;
  Slo slo;
  bool scrape_metrics = false;
  std::string metrics_path = "/metrics";
  std::string metrics_filter = "kv|preempt|expert|running|waiting|time_to_first_token|inter_token|"
                               "time_per_output|queue";
  std::string out_dir, json_path, csv_path, plot_path, requests_path;
  int threads = 1;
  std::string progress = "auto";        // auto | always | never
  bool fail_on_error = false;
  bool show_help = false;
};

// Parses argv (argv[0] is skipped). env_key is the API key from the environment ("" if none).
// Returns "" or an error message.
std::string parse_options(const std::vector<std::string>& args, const std::string& env_key, Options* out);
std::string usage_text();

// Requests to issue for a level when --requests is not given and no --duration bounds it.
int64_t default_requests(const Options& o, int64_t concurrency, double rate_per_s);

}  // namespace ds4::loadtest
