// Reports of a load-test run: the terminal tables, the JSON and CSV files, the per-request JSONL and
// the PNG plot (drawn by gnuplot). Every writer returns "" or an error naming the file.
// Used by main.cpp; the JSON/CSV field names are documented in loadtest/README.md.
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "loadtest/metrics_scrape.h"
#include "loadtest/runner.h"
#include "loadtest/stats.h"

namespace ds4::loadtest {

struct LevelResult {
  LevelPlan plan;
  LevelRun run;
  LevelStats stats;
  std::optional<MetricsDiff> server;  // when --metrics and both scrapes worked
  std::string metrics_error;          // why server figures are missing
};

struct RunInfo {
  std::string tool = "ds4serve-load";  // the JSON's "tool" (ds4serve-bench writes the same format)
  std::string started_utc;  // ISO 8601
  std::string url, model, path, endpoint, mode;
  std::string workload;     // one-line description
  std::string slo;          // as given, or ""
  int64_t warmup_requests = 0, warmup_ok = 0;
  int64_t warmup_usage_prompt_tokens = -1, warmup_expected_prompt_tokens = -1;
  bool interrupted = false;
};

// The level's x value: concurrency (closed loop) or request rate (open loop).
std::string level_label(const LevelPlan& plan);

void print_report(std::ostream& os, const RunInfo& info, const std::vector<LevelResult>& levels,
                  const std::string& metrics_filter);
std::string write_json(const std::string& path, const RunInfo& info, const std::vector<LevelResult>& levels);
std::string write_csv(const std::string& path, const std::vector<LevelResult>& levels);
std::string write_requests_jsonl(const std::string& path, const std::vector<LevelResult>& levels);
// Writes <path> (PNG) with gnuplot, keeping <path>.dat and <path>.gp beside it for re-plotting.
std::string write_plot(const std::string& path, const RunInfo& info, const std::vector<LevelResult>& levels);

}  // namespace ds4::loadtest
