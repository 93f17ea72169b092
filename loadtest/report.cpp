// Report writers (see report.h). Latencies are stored in seconds and printed/written in
// milliseconds; throughputs per second of the level's duration (first issue to last end).
#include "loadtest/report.h"

#include <spawn.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <regex>

#include "loadtest/json_out.h"

extern char** environ;

namespace ds4::loadtest {
namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Millisecond figure with precision that suits its size, right-aligned in `width`.
std::string ms_cell(double seconds, int width) {
  double ms = seconds * 1e3;
  const char* f = ms >= 1000 ? "%*.0f" : ms >= 100 ? "%*.1f" : "%*.2f";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, width, ms);
  return buf;
}

std::string num_cell(double v, int width, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%*.*f", width, decimals, v);
  return buf;
}

std::string int_cell(int64_t v, int width) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%*lld", width, static_cast<long long>(v));
  return buf;
}

std::string pad(const std::string& s, int width) {
  return s.size() >= static_cast<size_t>(width) ? s : std::string(width - s.size(), ' ') + s;
}

void print_throughput(std::ostream& os, const std::vector<LevelResult>& levels) {
  os << "\nThroughput (per second of each level's duration)\n"
     << pad("level", 8) << pad("reqs", 7) << pad("ok", 7) << pad("fail", 6) << pad("dur s", 8)
     << pad("req/s", 8) << pad("in tok/s", 10) << pad("out tok/s", 11) << pad("tok/s/user", 11)
     << pad("decode t/s", 11) << pad("good/s", 8) << pad("good%", 7) << pad("peak", 6) << "\n";
  for (const LevelResult& l : levels) {
    const LevelStats& s = l.stats;
    double good_pct = s.issued ? 100.0 * static_cast<double>(s.good) / static_cast<double>(s.issued) : 0;
    os << pad(level_label(l.plan), 8) << int_cell(s.issued, 7) << int_cell(s.completed, 7)
       << int_cell(s.failed, 6) << num_cell(s.duration_s, 8, 2) << num_cell(s.request_per_s, 8, 2)
       << num_cell(s.input_tok_per_s, 10, 1) << num_cell(s.output_tok_per_s, 11, 1)
       << num_cell(s.output_tok_per_s_per_user, 11, 1) << num_cell(s.decode_tok_per_s, 11, 1)
       << num_cell(s.goodput_req_per_s, 8, 2) << num_cell(good_pct, 7, 1)
       << int_cell(s.peak_concurrency, 6) << (l.run.interrupted ? "  (interrupted)" : "") << "\n";
  }
}

void print_latency(std::ostream& os, const std::vector<LevelResult>& levels) {
  const int w = 8;
  os << "\nLatency (ms): mean / p50 / p90 / p99\n" << pad("level", 8);
  for (const char* name : {"TTFT", "ITL", "TPOT", "E2E"}) {
    std::string head = std::string(name) + " " + std::string(w * 4 - 2 - std::string(name).size(), '-');
    os << "  " << head;
  }
  os << "\n";
  for (const LevelResult& l : levels) {
    os << pad(level_label(l.plan), 8);
    for (const Summary* m : {&l.stats.ttft_s, &l.stats.itl_s, &l.stats.tpot_s, &l.stats.e2e_s}) {
      os << "  " << ms_cell(m->mean, w - 2) << ms_cell(m->p50, w) << ms_cell(m->p90, w)
         << ms_cell(m->p99, w);
    }
    os << "\n";
  }
}

void print_notes(std::ostream& os, const std::vector<LevelResult>& levels, const std::string& filter) {
  std::regex re;
  bool have_re = true;
  try { re = std::regex(filter, std::regex::icase); } catch (const std::regex_error&) { have_re = false; }
  for (const LevelResult& l : levels) {
    const LevelStats& s = l.stats;
    std::string label = "level " + level_label(l.plan) + ": ";
    if (!s.errors.empty()) {
      os << label << "errors";
      for (const auto& [k, n] : s.errors) os << " " << k << " x" << n;
      for (const RequestRecord& r : l.run.records)
        if (!r.ok()) { os << " (first: " << r.error_detail.substr(0, 200) << ")"; break; }
      os << "\n";
    }
    if (s.usage_mismatches > 0)
      os << label << s.usage_mismatches << " requests: usage.completion_tokens differs from the "
         << "number of token events (" << s.output_tokens << " by usage vs " << s.chunk_tokens << " events)\n";
    if (s.usage_missing > 0)
      os << label << s.usage_missing << " requests without usage: tokens counted from events\n";
    if (l.run.dropped_arrivals > 0)
      os << label << l.run.dropped_arrivals << " arrivals still queued at the end were not sent\n";
    if (!l.metrics_error.empty()) os << label << "server metrics: " << l.metrics_error << "\n";
    if (!l.server || !have_re) continue;
    for (const auto& [k, v] : l.server->counter_deltas)
      if (std::regex_search(k, re)) os << label << "server " << k << " +" << json_number(v) << "\n";
    for (const auto& [k, v] : l.server->gauges)
      if (std::regex_search(k, re))
        os << label << "server " << k << " " << json_number(v.first) << " -> " << json_number(v.second) << "\n";
    for (const auto& [k, v] : l.server->histogram_means)
      if (std::regex_search(k, re)) os << label << "server mean " << k << " " << json_number(v) << "\n";
  }
}

void append_summary(std::string* o, const char* name, const Summary& s, double scale) {
  *o += json_string(name) + ":{\"count\":" + std::to_string(s.count);
  const std::pair<const char*, double> fields[] = {{"mean", s.mean}, {"std", s.std}, {"min", s.min},
                                                  {"p50", s.p50}, {"p90", s.p90}, {"p95", s.p95},
                                                  {"p99", s.p99}, {"max", s.max}};
  for (const auto& [k, v] : fields) *o += ",\"" + std::string(k) + "\":" + json_number(v * scale);
  *o += "}";
}

void append_server(std::string* o, const MetricsDiff& d) {
  *o += ",\"server\":{\"counters\":{";
  bool first = true;
  for (const auto& [k, v] : d.counter_deltas) {
    *o += (first ? "" : ",") + json_string(k) + ":" + json_number(v);
    first = false;
  }
  *o += "},\"gauges\":{";
  first = true;
  for (const auto& [k, v] : d.gauges) {
    *o += (first ? "" : ",") + json_string(k) + ":{\"before\":" + json_number(v.first) +
          ",\"after\":" + json_number(v.second) + "}";
    first = false;
  }
  *o += "},\"histogram_means\":{";
  first = true;
  for (const auto& [k, v] : d.histogram_means) {
    *o += (first ? "" : ",") + json_string(k) + ":" + json_number(v);
    first = false;
  }
  *o += "}}";
}

void append_level(std::string* o, const LevelResult& l) {
  const LevelStats& s = l.stats;
  bool open = l.plan.mode == LoadMode::kOpen;
  *o += "{\"mode\":" + json_string(open ? "open" : "closed");
  *o += ",\"concurrency\":" + (open && l.plan.concurrency <= 0 ? "null" : std::to_string(l.plan.concurrency));
  *o += ",\"rate_per_s\":" + (open ? json_number(l.plan.rate_per_s) : "null");
  *o += ",\"burstiness\":" + (open ? json_number(l.plan.burstiness) : "null");
  *o += ",\"interrupted\":" + std::string(l.run.interrupted ? "true" : "false");
  *o += ",\"dropped_arrivals\":" + std::to_string(l.run.dropped_arrivals);
  *o += ",\"requests\":{\"issued\":" + std::to_string(s.issued) + ",\"completed\":" +
        std::to_string(s.completed) + ",\"failed\":" + std::to_string(s.failed) +
        ",\"good\":" + std::to_string(s.good) + "}";
  *o += ",\"errors\":{";
  bool first = true;
  for (const auto& [k, n] : s.errors) { *o += (first ? "" : ",") + json_string(k) + ":" + std::to_string(n); first = false; }
  *o += "},\"error_examples\":[";
  int shown = 0;
  for (const RequestRecord& r : l.run.records) {
    if (r.ok() || shown >= 5) continue;
    *o += (shown++ ? "," : "") + json_string(r.error_detail.substr(0, 300));
  }
  *o += "]";
  const std::pair<const char*, double> rates[] = {
      {"duration_s", s.duration_s}, {"request_per_s", s.request_per_s},
      {"goodput_req_per_s", s.goodput_req_per_s}, {"input_tok_per_s", s.input_tok_per_s},
      {"output_tok_per_s", s.output_tok_per_s}, {"output_tok_per_s_per_user", s.output_tok_per_s_per_user},
      {"decode_tok_per_s", s.decode_tok_per_s}};
  for (const auto& [k, v] : rates) *o += ",\"" + std::string(k) + "\":" + json_number(v);
  *o += ",\"peak_concurrency\":" + std::to_string(s.peak_concurrency);
  *o += ",\"tokens\":{\"input\":" + std::to_string(s.input_tokens) + ",\"output\":" +
        std::to_string(s.output_tokens) + ",\"output_events\":" + std::to_string(s.chunk_tokens) +
        ",\"usage_mismatches\":" + std::to_string(s.usage_mismatches) +
        ",\"usage_missing\":" + std::to_string(s.usage_missing) + "}";
  const std::pair<const char*, const Summary*> ms[] = {
      {"ttft_ms", &s.ttft_s}, {"ttfr_ms", &s.ttfr_s}, {"itl_ms", &s.itl_s},
      {"tpot_ms", &s.tpot_s}, {"e2e_ms", &s.e2e_s}, {"queue_ms", &s.queue_s}};
  for (const auto& [k, v] : ms) { *o += ","; append_summary(o, k, *v, 1e3); }
  *o += ",";
  append_summary(o, "input_tokens_per_request", s.input_tokens_per_req, 1);
  *o += ",";
  append_summary(o, "output_tokens_per_request", s.output_tokens_per_req, 1);
  if (l.server) append_server(o, *l.server);
  if (!l.metrics_error.empty()) *o += ",\"server_error\":" + json_string(l.metrics_error);
  *o += "}";
}

std::string write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f) return "cannot write " + path;
  f << text;
  f.close();
  if (!f) return "cannot write " + path;
  return "";
}

}  // namespace

std::string level_label(const LevelPlan& plan) {
  if (plan.mode == LoadMode::kClosed) return "c=" + std::to_string(plan.concurrency);
  return "r=" + json_number(plan.rate_per_s);
}

void print_report(std::ostream& os, const RunInfo& info, const std::vector<LevelResult>& levels,
                  const std::string& metrics_filter) {
  os << info.tool << "  " << info.url << info.path << "  model " << info.model << "  " << info.mode
     << " loop\nworkload: " << info.workload << "\n";
  if (!info.slo.empty()) os << "SLO: " << info.slo << "\n";
  if (info.warmup_requests > 0) {
    os << "warm-up: " << info.warmup_ok << "/" << info.warmup_requests << " ok";
    if (info.warmup_usage_prompt_tokens >= 0 && info.warmup_expected_prompt_tokens >= 0)
      os << "; prompt tokens by usage " << info.warmup_usage_prompt_tokens << " for "
         << info.warmup_expected_prompt_tokens << " workload tokens (template and roles add "
         << info.warmup_usage_prompt_tokens - info.warmup_expected_prompt_tokens << ")";
    os << "\n";
  }
  print_throughput(os, levels);
  print_latency(os, levels);
  os << "\n";
  print_notes(os, levels, metrics_filter);
  if (info.interrupted) os << "run interrupted: the last level is partial\n";
}

std::string write_json(const std::string& path, const RunInfo& info, const std::vector<LevelResult>& levels) {
  std::string o = "{\"tool\":" + json_string(info.tool) + ",\"format\":1";
  o += ",\"started_utc\":" + json_string(info.started_utc);
  o += ",\"url\":" + json_string(info.url) + ",\"path\":" + json_string(info.path);
  o += ",\"model\":" + json_string(info.model) + ",\"endpoint\":" + json_string(info.endpoint);
  o += ",\"mode\":" + json_string(info.mode) + ",\"workload\":" + json_string(info.workload);
  o += ",\"slo\":" + json_string(info.slo);
  o += ",\"warmup\":{\"requests\":" + std::to_string(info.warmup_requests) + ",\"ok\":" +
       std::to_string(info.warmup_ok) + ",\"usage_prompt_tokens\":" +
       std::to_string(info.warmup_usage_prompt_tokens) + ",\"expected_prompt_tokens\":" +
       std::to_string(info.warmup_expected_prompt_tokens) + "}";
  o += ",\"interrupted\":" + std::string(info.interrupted ? "true" : "false");
  o += ",\"levels\":[";
  for (size_t i = 0; i < levels.size(); ++i) {
    if (i) o += ",";
    append_level(&o, levels[i]);
  }
  o += "]}\n";
  return write_file(path, o);
}

std::string write_csv(const std::string& path, const std::vector<LevelResult>& levels) {
  std::string o = "mode,concurrency,rate_per_s,issued,completed,failed,good,duration_s,request_per_s,"
                  "goodput_req_per_s,input_tok_per_s,output_tok_per_s,output_tok_per_s_per_user,"
                  "decode_tok_per_s,peak_concurrency";
  for (const char* m : {"ttft", "itl", "tpot", "e2e"})
    for (const char* q : {"mean", "p50", "p90", "p99"}) o += std::string(",") + m + "_ms_" + q;
  o += ",errors\n";
  for (const LevelResult& l : levels) {
    const LevelStats& s = l.stats;
    bool open = l.plan.mode == LoadMode::kOpen;
    o += std::string(open ? "open" : "closed") + "," +
         (open && l.plan.concurrency <= 0 ? "" : std::to_string(l.plan.concurrency)) + "," +
         (open ? json_number(l.plan.rate_per_s) : "") + "," + std::to_string(s.issued) + "," +
         std::to_string(s.completed) + "," + std::to_string(s.failed) + "," + std::to_string(s.good);
    for (double v : {s.duration_s, s.request_per_s, s.goodput_req_per_s, s.input_tok_per_s,
                     s.output_tok_per_s, s.output_tok_per_s_per_user, s.decode_tok_per_s})
      o.append(1, ',').append(json_number(v));
    o.append(1, ',').append(std::to_string(s.peak_concurrency));
    for (const Summary* m : {&s.ttft_s, &s.itl_s, &s.tpot_s, &s.e2e_s})
      for (double v : {m->mean, m->p50, m->p90, m->p99}) o.append(1, ',').append(json_number(v * 1e3));
    std::string errors;
    for (const auto& [k, n] : s.errors) errors += (errors.empty() ? "" : ";") + k + ":" + std::to_string(n);
    o += "," + errors + "\n";
  }
  return write_file(path, o);
}

std::string write_requests_jsonl(const std::string& path, const std::vector<LevelResult>& levels) {
  std::string o;
  for (const LevelResult& l : levels) {
    std::string level = json_string(level_label(l.plan));
    for (const RequestRecord& r : l.run.records) {
      o += "{\"level\":" + level + ",\"index\":" + std::to_string(r.index) +
           ",\"start_s\":" + json_number(r.start_s) + ",\"queue_ms\":" + json_number(r.queue_s * 1e3) +
           ",\"ttfr_ms\":" + (r.ttfr_s ? json_number(*r.ttfr_s * 1e3) : "null") +
           ",\"ttft_ms\":" + (r.ttft_s ? json_number(*r.ttft_s * 1e3) : "null") +
           ",\"e2e_ms\":" + json_number(r.end_s * 1e3);
      auto tpot = r.tpot_s();
      o += ",\"tpot_ms\":" + (tpot ? json_number(*tpot * 1e3) : "null") + ",\"itl_ms\":[";
      for (size_t i = 1; i < r.token_times_s.size(); ++i)
        o.append(i > 1 ? "," : "").append(json_number((r.token_times_s[i] - r.token_times_s[i - 1]) * 1e3));
      o += "],\"expected_input_tokens\":" + std::to_string(r.expected_input_tokens) +
           ",\"max_tokens\":" + std::to_string(r.max_tokens) +
           ",\"usage_prompt_tokens\":" + std::to_string(r.usage_prompt_tokens) +
           ",\"usage_completion_tokens\":" + std::to_string(r.usage_completion_tokens) +
           ",\"output_events\":" + std::to_string(r.chunk_tokens()) +
           ",\"finish_reason\":" + json_string(r.finish_reason) +
           ",\"error\":" + json_string(r.ok() ? "" : error_key(r)) +
           ",\"error_detail\":" + json_string(r.error_detail) + "}\n";
    }
  }
  return write_file(path, o);
}

std::string write_plot(const std::string& path, const RunInfo& info, const std::vector<LevelResult>& levels) {
  if (levels.empty()) return "no level to plot";
  if (path.find('\'') != std::string::npos) return "cannot plot to " + path + ": the path contains a quote";
  bool open = levels.front().plan.mode == LoadMode::kOpen;
  std::string dat = "# x out_tok_s tok_s_per_user ttft_p50_ms ttft_p99_ms tpot_p50_ms tpot_p99_ms req_s\n";
  double xmin = INFINITY, xmax = 0;
  for (const LevelResult& l : levels) {
    const LevelStats& s = l.stats;
    double x = open ? l.plan.rate_per_s : static_cast<double>(l.plan.concurrency);
    xmin = std::min(xmin, x);
    xmax = std::max(xmax, x);
    dat += json_number(x);
    for (double v : {s.output_tok_per_s, s.output_tok_per_s_per_user, s.ttft_s.p50 * 1e3,
                     s.ttft_s.p99 * 1e3, s.tpot_s.p50 * 1e3, s.tpot_s.p99 * 1e3, s.request_per_s})
      dat.append(1, ' ').append(fmt("%.6g", v));
    dat += "\n";
  }
  if (std::string e = write_file(path + ".dat", dat); !e.empty()) return e;
  std::string xlabel = open ? "request rate (req/s)" : "concurrency (users)";
  std::string logx = xmax >= 4 * xmin ? "set logscale x 2\n" : "";
  std::string d = "'" + path + ".dat'";
  std::string gp =
      "set terminal pngcairo size 1280,560 font 'sans,10'\n"
      "set output '" + path + "'\n" + logx +
      "set multiplot layout 1,2 title " + json_string("ds4serve-load: " + info.model + " (" + info.workload + ")") + "\n"
      "set grid\nset key top left\nset xlabel '" + xlabel + "'\n"
      "set yrange [0:*]\nset y2range [0:*]\n"
      "set title 'Throughput'\nset ylabel 'output tokens/s (all users)'\n"
      "set y2label 'output tokens/s per user'\nset ytics nomirror\nset y2tics\n"
      "plot " + d + " using 1:2 with linespoints lw 2 pt 7 title 'aggregate', " +
      d + " using 1:3 axes x1y2 with linespoints lw 2 pt 5 title 'per user'\n"
      "unset y2label\nunset y2tics\nset ytics mirror\n"
      "set title 'Latency'\nset ylabel 'milliseconds'\n"
      "plot " + d + " using 1:4 with linespoints lw 2 pt 7 title 'TTFT p50', " +
      d + " using 1:5 with linespoints lw 2 pt 6 dt 2 title 'TTFT p99', " +
      d + " using 1:6 with linespoints lw 2 pt 5 title 'TPOT p50', " +
      d + " using 1:7 with linespoints lw 2 pt 4 dt 2 title 'TPOT p99'\n"
      "unset multiplot\n";
  std::string script = path + ".gp";
  if (std::string e = write_file(script, gp); !e.empty()) return e;
  pid_t pid = 0;
  const char* argv[] = {"gnuplot", script.c_str(), nullptr};
  if (posix_spawnp(&pid, "gnuplot", nullptr, nullptr, const_cast<char* const*>(argv), environ) != 0)
    return "cannot run gnuplot to draw " + path + " (install gnuplot-nox)";
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return "gnuplot failed drawing " + path + " (script " + script + ")";
  return "";
}

}  // namespace ds4::loadtest
