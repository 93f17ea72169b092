// Load-test statistics: percentiles, summaries, SLO goodput and the per-level aggregates.
// Percentiles interpolate linearly between closest ranks (numpy's default, as vLLM bench reports).
// Pure functions over RequestRecords; used by the runner's report (report.cpp) and the unit tests.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "loadtest/request_record.h"

namespace ds4::loadtest {

// p in [0, 100]; sorted ascending and non-empty.
double percentile_sorted(std::span<const double> sorted, double p);

struct Summary {
  int64_t count = 0;
  double mean = 0, std = 0, min = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0, max = 0;
};
// Summary of the values (any order). An empty input gives count == 0 and zeros.
Summary summarize(std::vector<double> values);

// Service-level objectives in milliseconds; an unset one is not checked.
struct Slo {
  std::optional<double> ttft_ms, tpot_ms, e2e_ms;
  bool any() const { return ttft_ms || tpot_ms || e2e_ms; }
};
// Parses "ttft:500,tpot:50,e2e:10000" (any subset, any order). Returns an error message or "".
std::string parse_slo(const std::string& text, Slo* slo);
// A request is good when it completed and meets every given SLO. A request with one output
// token has no TPOT and passes the TPOT objective (as vLLM counts it).
bool meets_slo(const RequestRecord& r, const Slo& slo);

// Everything reported for one level, in seconds and tokens (the report prints milliseconds).
struct LevelStats {
  int64_t issued = 0, completed = 0, failed = 0;
  std::map<std::string, int64_t> errors;  // "http_503", "timeout", "disconnect", ...
  double duration_s = 0;         // first issue to last end among measured requests
  double request_per_s = 0;      // completed / duration
  int64_t input_tokens = 0;      // sum over completed (usage when sent, else the workload's aim)
  int64_t output_tokens = 0;     // sum over completed (usage when sent, else token events)
  int64_t chunk_tokens = 0;      // sum of token events over completed
  int64_t usage_mismatches = 0;  // completed requests whose usage differs from their event count
  int64_t usage_missing = 0;     // completed requests without a usage object
  double input_tok_per_s = 0;    // input_tokens / duration
  double output_tok_per_s = 0;   // output_tokens / duration
  double output_tok_per_s_per_user = 0;  // mean over requests of decode_tokens_per_s()
  double decode_tok_per_s = 0;   // llama-benchy's total: (sum(n) - #req) / (max last - min first)
  double goodput_req_per_s = 0;  // requests meeting every SLO / duration (= request_per_s w/o SLO)
  int64_t good = 0;
  int64_t peak_concurrency = 0;  // most requests in flight at once (sweep over [start, end))
  Summary ttft_s, ttfr_s, itl_s, tpot_s, e2e_s, queue_s, input_tokens_per_req, output_tokens_per_req;
};

LevelStats compute_level_stats(const std::vector<RequestRecord>& records, const Slo& slo);

// The error key used in LevelStats::errors ("http_429", "timeout", ...).
std::string error_key(const RequestRecord& r);

}  // namespace ds4::loadtest
