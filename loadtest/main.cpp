// ds4serve-load: the concurrency load tester's entry point. Parses the command line, resolves the
// target, warms up, runs each level (closed-loop concurrency or open-loop rate) with optional
// /metrics scrapes around it, then prints the tables and writes JSON, CSV, per-request JSONL and
// the PNG plot. Exit: 0 ok, 1 server unusable or an output failed, 2 bad usage, 3 --fail-on-error
// and a request failed, 130 interrupted.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <iostream>

#include <boost/asio/io_context.hpp>
#include <simdjson.h>

#include "loadtest/metrics_scrape.h"
#include "loadtest/options.h"
#include "loadtest/progress.h"
#include "loadtest/report.h"
#include "loadtest/runner.h"

namespace lt = ds4::loadtest;

namespace {

// Raised by SIGINT/SIGTERM; the runner polls it. A second signal exits at once.
std::atomic<int> g_stop{0};

void on_signal(int) {
  if (g_stop.exchange(1) != 0) _exit(130);
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The first model id served, from GET /v1/models.
std::string discover_model(lt::HttpClient& client, std::string* error) {
  lt::GetResult r = client.get_blocking("/v1/models", 30);
  if (!r.error.empty()) { *error = "GET /v1/models failed: " + r.error; return ""; }
  if (r.status != 200) { *error = "GET /v1/models answered HTTP " + std::to_string(r.status) + ": " + r.body.substr(0, 200); return ""; }
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  std::string_view id;
  if (parser.parse(r.body).get(root) != simdjson::SUCCESS ||
      root["data"].at(0)["id"].get_string().get(id) != simdjson::SUCCESS) {
    *error = "GET /v1/models did not list a model id; give --model";
    return "";
  }
  return std::string(id);
}

std::string describe_workload(const lt::Options& o) {
  const lt::WorkloadSpec& w = o.workload;
  auto len = [](const lt::LengthSpec& l) {
    return l.min == l.max ? std::to_string(l.min) : std::to_string(l.min) + "-" + std::to_string(l.max);
  };
  std::string s = w.dataset_path.empty() ? "input " + len(w.input) + " tok" : "dataset " + w.dataset_path;
  s += ", output " + len(w.output) + " tok" + (w.ignore_eos ? " (ignore_eos)" : "");
  if (w.depth_tokens > 0) s += ", depth " + std::to_string(w.depth_tokens);
  if (w.shared_prefix > 0) s += ", shared prefix " + std::to_string(static_cast<int>(w.shared_prefix * 100 + 0.5)) + "%";
  s += w.endpoint == lt::Endpoint::kChat ? ", chat" : ", completions";
  return s;
}

bool scrape(lt::HttpClient& client, const lt::Options& o, lt::MetricsScrape* out, std::string* error) {
  lt::GetResult r = client.get_blocking(o.metrics_path, 30);
  if (!r.error.empty()) { *error = "GET " + o.metrics_path + " failed: " + r.error; return false; }
  if (r.status != 200) { *error = "GET " + o.metrics_path + " answered HTTP " + std::to_string(r.status); return false; }
  *error = lt::parse_prometheus_text(r.body, out);
  return error->empty();
}

std::vector<lt::LevelPlan> make_plans(const lt::Options& o) {
  std::vector<lt::LevelPlan> plans;
  if (o.mode == lt::LoadMode::kClosed) {
    for (int64_t c : o.concurrency) {
      lt::LevelPlan p;
      p.concurrency = c;
      p.num_requests = lt::default_requests(o, c, 0);
      p.duration_s = o.duration_s;
      plans.push_back(p);
    }
  } else {
    for (size_t i = 0; i < o.rates.size(); ++i) {
      lt::LevelPlan p;
      p.mode = lt::LoadMode::kOpen;
      p.concurrency = o.max_concurrency;
      p.rate_per_s = o.rates[i];
      p.burstiness = o.burstiness;
      p.num_requests = lt::default_requests(o, 0, o.rates[i]);
      p.duration_s = o.duration_s;
      p.seed = o.workload.seed * 1000003 + i;
      plans.push_back(p);
    }
  }
  return plans;
}

// Runs the warm-up requests; fills info. Returns false (with a message) when none succeeded.
bool warm_up(lt::Runner& runner, const lt::Options& o, int64_t* next_index, lt::RunInfo* info,
             lt::ProgressBar* bar) {
  info->warmup_requests = o.warmup;
  if (o.warmup == 0) return true;
  lt::LevelPlan plan;
  plan.concurrency = std::min<int64_t>(o.warmup, o.mode == lt::LoadMode::kClosed ? o.concurrency.front() : 1);
  plan.num_requests = o.warmup;
  bar->begin_level("warm-up");
  lt::LevelRun run = runner.run_level(plan, *next_index);
  bar->end_level();
  *next_index += o.warmup;
  for (const lt::RequestRecord& r : run.records) {
    if (!r.ok()) continue;
    ++info->warmup_ok;
    info->warmup_usage_prompt_tokens = r.usage_prompt_tokens;
    info->warmup_expected_prompt_tokens = r.expected_input_tokens;
  }
  if (info->warmup_ok == 0 && !run.interrupted) {
    const lt::RequestRecord& r = run.records.front();
    std::cerr << "ds4serve-load: warm-up failed (" << lt::error_key(r) << "): " << r.error_detail << "\n";
    return false;
  }
  return true;
}

int write_outputs(const lt::Options& o, const lt::RunInfo& info, const std::vector<lt::LevelResult>& levels) {
  int rc = 0;
  auto check = [&](const std::string& e) {
    if (!e.empty()) { std::cerr << "ds4serve-load: " << e << "\n"; rc = 1; }
  };
  if (!o.out_dir.empty() && ::access(o.out_dir.c_str(), W_OK) != 0) {
    std::cerr << "ds4serve-load: output folder " << o.out_dir << " does not exist or is not writable\n";
    return 1;
  }
  if (!o.json_path.empty()) check(lt::write_json(o.json_path, info, levels));
  if (!o.csv_path.empty()) check(lt::write_csv(o.csv_path, levels));
  if (!o.requests_path.empty()) check(lt::write_requests_jsonl(o.requests_path, levels));
  if (!o.plot_path.empty()) check(lt::write_plot(o.plot_path, info, levels));
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  const char* env_key = std::getenv("DS4_API_KEY");
  if (!env_key) env_key = std::getenv("OPENAI_API_KEY");
  lt::Options o;
  std::string err = lt::parse_options(std::vector<std::string>(argv, argv + argc), env_key ? env_key : "", &o);
  if (!err.empty()) {
    std::cerr << "ds4serve-load: " << err << "\n";
    return 2;
  }
  if (o.show_help) { std::cout << lt::usage_text(); return 0; }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGPIPE, SIG_IGN);

  boost::asio::io_context ioc;
  lt::HttpClient client(ioc, o.target, o.api_key, o.timeout_s, lt::HttpClient::Clock::now());
  if (err = client.resolve(); !err.empty()) { std::cerr << "ds4serve-load: " << err << "\n"; return 1; }
  if (o.workload.model.empty()) {
    o.workload.model = discover_model(client, &err);
    if (!err.empty()) { std::cerr << "ds4serve-load: " << err << "\n"; return 1; }
  }
  lt::Workload workload;
  if (err = workload.init(o.workload); !err.empty()) { std::cerr << "ds4serve-load: " << err << "\n"; return 2; }

  lt::RunInfo info;
  info.started_utc = utc_now();
  info.url = o.url;
  info.model = o.workload.model;
  info.path = o.path;
  info.endpoint = o.workload.endpoint == lt::Endpoint::kChat ? "chat" : "completions";
  info.mode = o.mode == lt::LoadMode::kClosed ? "closed" : "open";
  info.workload = describe_workload(o);
  for (const char* k : {"ttft", "tpot", "e2e"}) {
    const std::optional<double>& v = std::string(k) == "ttft" ? o.slo.ttft_ms : std::string(k) == "tpot" ? o.slo.tpot_ms : o.slo.e2e_ms;
    if (v) info.slo += (info.slo.empty() ? "" : ",") + std::string(k) + ":" + std::to_string(static_cast<int64_t>(*v)) + "ms";
  }
  bool tty = ::isatty(2) != 0;
  lt::ProgressBar bar(stderr, o.progress == "always" || (o.progress == "auto" && tty));
  lt::Runner runner(ioc, client, workload, o.path, o.threads, &g_stop,
                    [&bar](const lt::Progress& p) { bar.update(p); });

  int64_t next_index = 0;
  if (!warm_up(runner, o, &next_index, &info, &bar)) return 1;
  std::vector<lt::LevelResult> levels;
  for (const lt::LevelPlan& plan : make_plans(o)) {
    if (g_stop.load() != 0) break;
    lt::LevelResult level;
    level.plan = plan;
    lt::MetricsScrape before, after;
    bool have_before = o.scrape_metrics && scrape(client, o, &before, &level.metrics_error);
    bar.begin_level(lt::level_label(plan));
    level.run = runner.run_level(plan, next_index);
    bar.end_level();
    next_index += level.run.records.size() + level.run.dropped_arrivals;
    if (have_before && scrape(client, o, &after, &level.metrics_error)) level.server = lt::diff_metrics(before, after);
    level.stats = lt::compute_level_stats(level.run.records, o.slo);
    info.interrupted = info.interrupted || level.run.interrupted;
    levels.push_back(std::move(level));
  }
  info.interrupted = info.interrupted || g_stop.load() != 0;
  lt::print_report(std::cout, info, levels, o.metrics_filter);
  int rc = write_outputs(o, info, levels);
  if (info.interrupted) return 130;
  if (rc != 0) return rc;
  if (o.fail_on_error)
    for (const lt::LevelResult& l : levels)
      if (l.stats.failed > 0) return 3;
  return 0;
}
