// Prometheus text parsing and differencing (see metrics_scrape.h). A series is a counter when its
// family is TYPEd counter or, without a TYPE line, when its name ends in _total.
#include "loadtest/metrics_scrape.h"

#include <cctype>
#include <cstdlib>
#include <sstream>

namespace ds4::loadtest {
namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Family of a sample name: strips the histogram/summary/counter suffixes when that family is typed.
std::string family_of(const std::string& name, const std::map<std::string, std::string>& types) {
  for (std::string_view suffix : {"_bucket", "_sum", "_count", "_total", "_created"}) {
    if (ends_with(name, suffix)) {
      std::string base = name.substr(0, name.size() - suffix.size());
      if (types.count(base)) return base;
    }
  }
  return name;
}

// Splits "name{labels} value [ts]". Returns false on a malformed line.
bool parse_sample_line(std::string_view line, MetricSample* s) {
  size_t i = 0;
  while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i])) && line[i] != '{') ++i;
  if (i == 0) return false;
  s->name = std::string(line.substr(0, i));
  s->labels.clear();
  if (i < line.size() && line[i] == '{') {
    size_t start = i;
    bool in_quote = false;
    for (++i; i < line.size(); ++i) {
      char c = line[i];
      if (in_quote && c == '\\') { ++i; continue; }
      if (c == '"') in_quote = !in_quote;
      else if (c == '}' && !in_quote) break;
    }
    if (i >= line.size()) return false;
    s->labels = std::string(line.substr(start, i - start + 1));
    ++i;
  }
  std::string_view rest = trim(line.substr(i));
  size_t sp = rest.find_first_of(" \t");
  std::string value(rest.substr(0, sp));
  if (value.empty()) return false;
  char* end = nullptr;
  s->value = std::strtod(value.c_str(), &end);
  return *end == '\0';
}

}  // namespace

std::string parse_prometheus_text(std::string_view text, MetricsScrape* out) {
  *out = MetricsScrape{};
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream ss{std::string(line)};
      std::string hash, kw, name, type;
      ss >> hash >> kw >> name >> type;
      if (kw == "TYPE" && !name.empty()) out->types[name] = type;
      continue;
    }
    MetricSample s;
    if (!parse_sample_line(line, &s))
      return "metrics line " + std::to_string(line_no) + " is not 'name{labels} value': " +
             std::string(line.substr(0, 120));
    out->samples.push_back(std::move(s));
  }
  return "";
}

MetricsDiff diff_metrics(const MetricsScrape& before, const MetricsScrape& after) {
  MetricsDiff d;
  std::map<std::string, double> old;
  for (const MetricSample& s : before.samples) old[s.key()] = s.value;
  std::map<std::string, double> sum_delta, count_delta;
  for (const MetricSample& s : after.samples) {
    std::string family = family_of(s.name, after.types);
    auto t = after.types.find(family);
    std::string type = t == after.types.end() ? "" : t->second;
    auto o = old.find(s.key());
    double prev = o == old.end() ? 0.0 : o->second;
    if (type == "histogram" || type == "summary") {
      if (ends_with(s.name, "_sum")) sum_delta[family + s.labels] = s.value - prev;
      else if (ends_with(s.name, "_count")) count_delta[family + s.labels] = s.value - prev;
      continue;  // buckets and quantiles are not reported
    }
    bool counter = type == "counter" || (type.empty() && ends_with(s.name, "_total"));
    if (counter) d.counter_deltas[s.key()] = s.value - prev;
    else d.gauges[s.key()] = {o == old.end() ? s.value : prev, s.value};
  }
  for (const auto& [key, dsum] : sum_delta) {
    auto c = count_delta.find(key);
    if (c != count_delta.end() && c->second > 0) d.histogram_means[key] = dsum / c->second;
  }
  return d;
}

}  // namespace ds4::loadtest
