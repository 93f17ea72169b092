// The closed loop's report (see closed_loop_report.h).
#include "scheduler/tools/closed_loop_report.h"

#include <cstdio>
#include <ctime>
#include <iostream>

namespace ds4 {
namespace {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The workload line, worded as ds4serve-load's describe_workload() words its own.
std::string describe_workload(const BenchOptions& o) {
  char buf[160];
  if (o.prompt_max != o.prompt_min)
    std::snprintf(buf, sizeof buf, "input %d-%d tok", o.prompt_min, o.prompt_max);
  else
    std::snprintf(buf, sizeof buf, "input %d tok", o.prompt_min);
  std::string s = buf;
  std::snprintf(buf, sizeof buf, " (random ids), output %d tok (ignore_eos)", o.output_len);
  s += buf;
  if (o.shared_prefix > 0) {
    std::snprintf(buf, sizeof buf, ", shared prefix %d tok", o.shared_prefix);
    s += buf;
  }
  return s + ", engine";
}

const char* launch_label(StepLaunch l) {
  switch (l) {
    case StepLaunch::kDirect: return "engine_step_launches{launch=\"direct\"}";
    case StepLaunch::kGraphReplay: return "engine_step_launches{launch=\"graph_replay\"}";
    case StepLaunch::kGraphCapture: return "engine_step_launches{launch=\"graph_capture\"}";
  }
  return "engine_step_launches{launch=\"unknown\"}";
}

double mean_of(double sum, double count) { return count > 0 ? sum / count : 0.0; }

}  // namespace

loadtest::MetricsDiff engine_counters(const std::vector<StepStats>& steps, const EngineStats& before,
                                      const EngineStats& after) {
  loadtest::MetricsDiff d;
  double step_ms = 0, decode_ms = 0, decode_steps = 0, seqs = 0, prefill = 0, sampled = 0, preempted = 0;
  for (const StepStats& s : steps) {
    step_ms += s.step_us / 1e3;
    seqs += s.num_seqs;
    prefill += double(s.prefill_tokens);
    sampled += s.num_sampled;
    preempted += s.num_preempted;
    d.counter_deltas[launch_label(s.launch)] += 1;
    if (s.prefill_tokens > 0) continue;
    decode_ms += s.step_us / 1e3;
    decode_steps += 1;
  }
  d.counter_deltas["engine_steps"] = double(steps.size());
  d.counter_deltas["engine_prefill_tokens"] = prefill;
  d.counter_deltas["engine_sampled_tokens"] = sampled;
  d.counter_deltas["engine_preemptions"] = preempted;
  d.counter_deltas["engine_prefix_cache_hit_tokens"] =
      double(after.prefix_cache_hit_tokens - before.prefix_cache_hit_tokens);
  d.histogram_means["engine_step_ms"] = mean_of(step_ms, double(steps.size()));
  d.histogram_means["engine_decode_step_ms"] = mean_of(decode_ms, decode_steps);
  d.histogram_means["engine_batch_seqs"] = mean_of(seqs, double(steps.size()));
  return d;
}

ClosedLoopReport::ClosedLoopReport(const BenchOptions& o, const std::string& description) : o_(o) {
  info_.tool = "ds4serve-bench";
  info_.started_utc = utc_now();
  info_.url = "engine:";
  info_.model = description;
  info_.endpoint = "engine";
  info_.mode = "closed";
  info_.workload = describe_workload(o);
  info_.interrupted = true;  // until finish()
}

void ClosedLoopReport::set_warmup(const loadtest::LevelRun& warmup) {
  info_.warmup_requests = int64_t(warmup.records.size());
  for (const loadtest::RequestRecord& r : warmup.records) {
    if (!r.ok()) continue;
    ++info_.warmup_ok;
    info_.warmup_usage_prompt_tokens = r.usage_prompt_tokens;
    info_.warmup_expected_prompt_tokens = r.expected_input_tokens;
  }
}

void ClosedLoopReport::add_level(loadtest::LevelResult level) {
  const loadtest::LevelStats& s = level.stats;
  std::printf("level %s done: %lld requests ok, %lld failed, %.1f output tok/s, TTFT p50 %.1f ms, ITL p50 %.2f ms\n",
              loadtest::level_label(level.plan).c_str(), (long long)s.completed, (long long)s.failed, s.output_tok_per_s,
              s.ttft_s.p50 * 1e3, s.itl_s.p50 * 1e3);
  std::fflush(stdout);
  levels_.push_back(std::move(level));
  if (const std::string error = write_files(); !error.empty())
    std::fprintf(stderr, "ds4serve-bench: error: %s\n", error.c_str());
}

std::string ClosedLoopReport::write_files() const {
  for (const std::string& path : o_.out_files) {
    const bool json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
    const std::string error = json ? loadtest::write_json(path, info_, levels_) : loadtest::write_csv(path, levels_);
    if (!error.empty()) return error;
  }
  return "";
}

int ClosedLoopReport::finish() {
  info_.interrupted = false;
  std::fflush(stdout);
  loadtest::print_report(std::cout, info_, levels_, "^engine_");
  std::cout.flush();
  int rc = 0;
  for (const loadtest::LevelResult& l : levels_)
    if (l.stats.failed > 0) {
      std::fprintf(stderr, "ds4serve-bench: error: %lld requests of level %s failed (see the report)\n",
                   (long long)l.stats.failed, loadtest::level_label(l.plan).c_str());
      rc = 1;
    }
  if (const std::string error = write_files(); !error.empty()) {
    std::fprintf(stderr, "ds4serve-bench: error: %s\n", error.c_str());
    return 1;
  }
  for (const std::string& path : o_.out_files) std::printf("wrote %s\n", path.c_str());
  return rc;
}

}  // namespace ds4
