// Prometheus text (0.0.4) reading and the before/after difference that ds4serve-load reports next
// to a level's client-side numbers: counter increments, gauge values, histogram means over the
// level (delta sum / delta count). Used by main.cpp; tested in loadtest_metrics_test.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ds4::loadtest {

struct MetricSample {
  std::string name;    // e.g. "vllm:num_preemptions_total"
  std::string labels;  // the label set as written, e.g. {model_name="x"}, or ""
  double value = 0;
  std::string key() const { return name + labels; }
};

struct MetricsScrape {
  std::vector<MetricSample> samples;
  std::map<std::string, std::string> types;  // family name -> counter | gauge | histogram | ...
};

// Returns "" or an error naming the first bad line.
std::string parse_prometheus_text(std::string_view text, MetricsScrape* out);

struct MetricsDiff {
  std::map<std::string, double> counter_deltas;                      // series key -> after - before
  std::map<std::string, std::pair<double, double>> gauges;           // series key -> (before, after)
  std::map<std::string, double> histogram_means;                     // family+labels -> dsum/dcount
};

// Series only in `after` count from zero; histogram buckets are left out (means are kept).
MetricsDiff diff_metrics(const MetricsScrape& before, const MetricsScrape& after);

}  // namespace ds4::loadtest
