// Load-test statistics (see stats.h): percentiles, SLO goodput, per-level aggregates.
// Duration is the span from the first request's issue to the last request's end, so requests
// still in flight when a level stops issuing are counted in full.
#include "loadtest/stats.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <sstream>

namespace ds4::loadtest {

std::string_view error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kNone: return "none";
    case ErrorKind::kConnect: return "connect";
    case ErrorKind::kHttpStatus: return "http";
    case ErrorKind::kTimeout: return "timeout";
    case ErrorKind::kDisconnect: return "disconnect";
    case ErrorKind::kStreamError: return "stream_error";
    case ErrorKind::kProtocol: return "protocol";
    case ErrorKind::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::optional<double> RequestRecord::tpot_s() const {
  int64_t n = output_tokens();
  if (!ok() || n < 2 || token_times_s.size() < 2) return std::nullopt;
  return (token_times_s.back() - token_times_s.front()) / static_cast<double>(n - 1);
}

std::optional<double> RequestRecord::decode_tokens_per_s() const {
  std::optional<double> tpot = tpot_s();
  if (!tpot || *tpot <= 0) return std::nullopt;
  return 1.0 / *tpot;
}

double percentile_sorted(std::span<const double> sorted, double p) {
  if (sorted.empty()) return 0;
  p = std::clamp(p, 0.0, 100.0);
  double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(rank));
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Summary summarize(std::vector<double> values) {
  Summary s;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.count = static_cast<int64_t>(values.size());
  double sum = std::accumulate(values.begin(), values.end(), 0.0);
  s.mean = sum / static_cast<double>(values.size());
  double sq = 0;
  for (double v : values) sq += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(sq / static_cast<double>(values.size()));  // population std, as numpy.std
  s.min = values.front();
  s.max = values.back();
  s.p50 = percentile_sorted(values, 50);
  s.p90 = percentile_sorted(values, 90);
  s.p95 = percentile_sorted(values, 95);
  s.p99 = percentile_sorted(values, 99);
  return s;
}

std::string parse_slo(const std::string& text, Slo* slo) {
  *slo = Slo{};
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t colon = item.find(':');
    if (colon == std::string::npos) return "SLO item '" + item + "' is not NAME:MILLISECONDS";
    std::string name = item.substr(0, colon), value = item.substr(colon + 1);
    char* end = nullptr;
    double ms = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || !std::isfinite(ms) || ms <= 0)
      return "SLO '" + name + "' needs a positive number of milliseconds, got '" + value + "'";
    if (name == "ttft") slo->ttft_ms = ms;
    else if (name == "tpot") slo->tpot_ms = ms;
    else if (name == "e2e" || name == "e2el") slo->e2e_ms = ms;
    else return "unknown SLO '" + name + "' (known: ttft, tpot, e2e)";
  }
  if (!slo->any()) return "empty SLO list";
  return "";
}

bool meets_slo(const RequestRecord& r, const Slo& slo) {
  if (!r.ok()) return false;
  if (slo.ttft_ms && (!r.ttft_s || *r.ttft_s * 1e3 > *slo.ttft_ms)) return false;
  if (slo.tpot_ms) {
    std::optional<double> tpot = r.tpot_s();
    if (tpot && *tpot * 1e3 > *slo.tpot_ms) return false;
  }
  if (slo.e2e_ms && r.end_s * 1e3 > *slo.e2e_ms) return false;
  return true;
}

std::string error_key(const RequestRecord& r) {
  if (r.error == ErrorKind::kHttpStatus) return "http_" + std::to_string(r.http_status);
  return std::string(error_kind_name(r.error));
}

namespace {

// Most requests in flight at once: sweep over half-open [start, end) intervals.
int64_t peak_concurrency(const std::vector<RequestRecord>& records) {
  std::vector<std::pair<double, int>> events;
  events.reserve(records.size() * 2);
  for (const RequestRecord& r : records) {
    events.push_back({r.start_s, +1});
    events.push_back({r.start_s + r.end_s, -1});
  }
  // At equal times ends come first (-1 < +1): a request ending when another starts does not overlap.
  std::sort(events.begin(), events.end());
  int64_t now = 0, peak = 0;
  for (const auto& e : events) peak = std::max(peak, now += e.second);
  return peak;
}

// llama-benchy's aggregate decode rate: tokens after each request's first, over the span from the
// earliest first token to the latest last token.
double benchy_decode_rate(const std::vector<const RequestRecord*>& done) {
  double first = INFINITY, last = -INFINITY;
  int64_t tokens_after_first = 0;
  for (const RequestRecord* r : done) {
    if (r->token_times_s.empty()) continue;
    first = std::min(first, r->start_s + r->token_times_s.front());
    last = std::max(last, r->start_s + r->token_times_s.back());
    tokens_after_first += std::max<int64_t>(0, r->output_tokens() - 1);
  }
  return last > first ? static_cast<double>(tokens_after_first) / (last - first) : 0.0;
}

}  // namespace

LevelStats compute_level_stats(const std::vector<RequestRecord>& records, const Slo& slo) {
  LevelStats st;
  st.issued = static_cast<int64_t>(records.size());
  if (records.empty()) return st;
  double t_begin = INFINITY, t_end = -INFINITY;
  std::vector<const RequestRecord*> done;
  std::vector<double> ttft, ttfr, itl, tpot, e2e, queue, in_tok, out_tok, per_user;
  for (const RequestRecord& r : records) {
    t_begin = std::min(t_begin, r.start_s);
    t_end = std::max(t_end, r.start_s + r.end_s);
    queue.push_back(r.queue_s);
    if (!r.ok()) {
      ++st.failed;
      ++st.errors[error_key(r)];
      continue;
    }
    ++st.completed;
    done.push_back(&r);
    int64_t input = r.usage_prompt_tokens >= 0 ? r.usage_prompt_tokens : r.expected_input_tokens;
    if (input > 0) { st.input_tokens += input; in_tok.push_back(static_cast<double>(input)); }
    st.output_tokens += r.output_tokens();
    st.chunk_tokens += r.chunk_tokens();
    out_tok.push_back(static_cast<double>(r.output_tokens()));
    if (r.usage_completion_tokens < 0) ++st.usage_missing;
    else if (r.usage_completion_tokens != r.chunk_tokens()) ++st.usage_mismatches;
    if (r.ttft_s) ttft.push_back(*r.ttft_s);
    if (r.ttfr_s) ttfr.push_back(*r.ttfr_s);
    for (size_t i = 1; i < r.token_times_s.size(); ++i)
      itl.push_back(r.token_times_s[i] - r.token_times_s[i - 1]);
    if (auto t = r.tpot_s()) tpot.push_back(*t);
    if (auto d = r.decode_tokens_per_s()) per_user.push_back(*d);
    e2e.push_back(r.end_s);
    if (meets_slo(r, slo)) ++st.good;
  }
  st.duration_s = t_end - t_begin;
  if (st.duration_s > 0) {
    st.request_per_s = static_cast<double>(st.completed) / st.duration_s;
    st.goodput_req_per_s = static_cast<double>(st.good) / st.duration_s;
    st.input_tok_per_s = static_cast<double>(st.input_tokens) / st.duration_s;
    st.output_tok_per_s = static_cast<double>(st.output_tokens) / st.duration_s;
  }
  if (!per_user.empty())
    st.output_tok_per_s_per_user =
        std::accumulate(per_user.begin(), per_user.end(), 0.0) / static_cast<double>(per_user.size());
  st.decode_tok_per_s = benchy_decode_rate(done);
  st.peak_concurrency = peak_concurrency(records);
  st.ttft_s = summarize(std::move(ttft));
  st.ttfr_s = summarize(std::move(ttfr));
  st.itl_s = summarize(std::move(itl));
  st.tpot_s = summarize(std::move(tpot));
  st.e2e_s = summarize(std::move(e2e));
  st.queue_s = summarize(std::move(queue));
  st.input_tokens_per_req = summarize(std::move(in_tok));
  st.output_tokens_per_req = summarize(std::move(out_tok));
  return st;
}

}  // namespace ds4::loadtest
