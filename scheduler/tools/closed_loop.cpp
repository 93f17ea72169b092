// The closed-loop driver of ds4serve-bench (see closed_loop.h): one thread keeps U requests in
// flight, woken by the streams' notify callbacks (a doorbell rung on the engine thread), and turns
// every finished request into a loadtest::RequestRecord.
#include "scheduler/tools/closed_loop.h"

#include <algorithm>
#include <condition_variable>
#include <random>

#include "engine/load_error.h"
#include "scheduler/tools/closed_loop_report.h"

namespace ds4 {
namespace {

using loadtest::RequestRecord;

constexpr auto kWakeInterval = std::chrono::milliseconds(50);  // also polls without a ring
constexpr double kStallLimitS = 600;  // no output at all for this long: the engine is stuck

double seconds(EngineClock::duration d) { return std::chrono::duration<double>(d).count(); }
bool stamped(EngineClock::time_point t) { return t != EngineClock::time_point{}; }

// Rung by the engine thread when a stream has news (RequestStream::Notify: cheap, never blocks
// for long); the driver waits on it. The ring is sticky until the driver takes it.
class Doorbell {
 public:
  void ring() {
    {
      std::lock_guard lock(mutex_);
      rung_ = true;
    }
    cv_.notify_one();
  }
  void wait_for(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, timeout, [this] { return rung_; });
    rung_ = false;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool rung_ = false;
};

// One user's request in flight.
struct InFlight {
  std::shared_ptr<RequestStream> stream;
  RequestRecord record;
  EngineClock::time_point submitted{};  // the driver's clock at submit (when the engine stamped nothing)
  EngineClock::time_point queued{};     // the engine's arrival stamp
  bool active = false;
  EngineClock::time_point base() const { return stamped(queued) ? queued : submitted; }
};

// A token-carrying chunk: the first one at the engine's first-token stamp, later ones when taken.
void record_tokens(InFlight& f, const StreamChunk& c, EngineClock::time_point now) {
  RequestRecord& r = f.record;
  const bool first = r.token_times_s.empty() && stamped(c.timing.first_token);
  const double t = seconds((first ? c.timing.first_token : now) - f.base());
  r.token_times_s.push_back(t);
  if (!r.ttft_s) r.ttft_s = r.ttfr_s = t;
}

void record_finish(InFlight& f, const StreamChunk& c, EngineClock::time_point now, EngineClock::time_point epoch) {
  RequestRecord& r = f.record;
  r.start_s = seconds(f.base() - epoch);
  const double end = seconds((stamped(c.timing.finished) ? c.timing.finished : now) - f.base());
  r.end_s = r.token_times_s.empty() ? end : std::max(end, r.token_times_s.back());
  r.usage_prompt_tokens = c.usage.prompt_tokens;
  r.usage_completion_tokens = c.usage.completion_tokens;
  r.finish_reason = finish_reason_name(c.finish_reason);
  if (c.finish_reason == FinishReason::kLength || c.finish_reason == FinishReason::kStop) return;
  r.error = loadtest::ErrorKind::kStreamError;
  r.error_detail = r.finish_reason + (c.error.empty() ? "" : ": " + c.error);
}

class Driver {
 public:
  Driver(Engine& engine, const BenchOptions& o, int32_t n_vocab)
      : engine_(engine), o_(o), n_vocab_(n_vocab), epoch_(EngineClock::now()) {}

  // One level: `users` in a closed loop until `seconds` passed (0: no limit) or max_requests were
  // issued (0: no limit); every issued request is waited for.
  loadtest::LevelRun run_level(int users, double level_seconds, int64_t max_requests) {
    level_start_ = EngineClock::now();
    level_seconds_ = level_seconds;
    max_requests_ = max_requests;
    issued_ = 0;
    std::vector<InFlight> slots(users);
    int active = 0;
    for (InFlight& s : slots)
      if (may_issue()) active += submit(s);
    loadtest::LevelRun run;
    auto last_progress = EngineClock::now();
    while (active > 0) {
      bell_->wait_for(kWakeInterval);
      for (InFlight& s : slots) {
        if (!s.active || !take_output(s, last_progress)) continue;
        run.records.push_back(std::move(s.record));
        s.active = false;
        --active;
        if (may_issue()) active += submit(s);
      }
      if (const std::string fatal = engine_.fatal_error(); !fatal.empty())
        throw LoadError("closed loop: the engine failed: " + fatal);
      if (seconds(EngineClock::now() - last_progress) > kStallLimitS)
        throw LoadError("closed loop: no output from the engine for " + std::to_string(int(kStallLimitS)) + " s");
    }
    return run;
  }

 private:
  bool may_issue() const {
    if (max_requests_ > 0 && issued_ >= max_requests_) return false;
    return level_seconds_ <= 0 || seconds(EngineClock::now() - level_start_) < level_seconds_;
  }

  int submit(InFlight& s) {
    const int64_t index = next_index_++;
    GenerationRequest q = closed_loop_request(o_, n_vocab_, index);
    s = InFlight{};
    s.record.index = index;
    s.record.expected_input_tokens = int64_t(q.prompt_tokens.size());
    s.record.max_tokens = q.max_tokens;
    s.submitted = EngineClock::now();
    s.stream = engine_.submit(std::move(q), [bell = bell_] { bell->ring(); });
    s.active = true;
    ++issued_;
    return 1;
  }

  // Takes what the stream published; true once the request finished (its record complete).
  bool take_output(InFlight& s, EngineClock::time_point& last_progress) {
    StreamChunk c;
    if (!s.stream->poll(c)) return false;
    const auto now = EngineClock::now();
    last_progress = now;
    if (!stamped(s.queued) && stamped(c.timing.queued)) s.queued = c.timing.queued;
    if (!c.tokens.empty()) record_tokens(s, c, now);
    if (!c.finished()) return false;
    record_finish(s, c, now, epoch_);
    return true;
  }

  Engine& engine_;
  const BenchOptions& o_;
  const int32_t n_vocab_;
  const EngineClock::time_point epoch_;
  std::shared_ptr<Doorbell> bell_ = std::make_shared<Doorbell>();
  EngineClock::time_point level_start_{};
  double level_seconds_ = 0;
  int64_t max_requests_ = 0, issued_ = 0, next_index_ = 0;
};

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

GenerationRequest closed_loop_request(const BenchOptions& o, int32_t n_vocab, int64_t index) {
  const int32_t lo = 100, hi = std::min<int32_t>(n_vocab, 100000);  // ordinary (non-control) ids
  std::mt19937_64 shared_rng(mix(o.seed)), own_rng(mix(mix(o.seed) ^ uint64_t(index + 1)));
  const int len = o.prompt_min + int(own_rng() % uint64_t(o.prompt_max - o.prompt_min + 1));
  GenerationRequest r;
  for (int i = 0; i < len; ++i) {
    std::mt19937_64& rng = i < o.shared_prefix ? shared_rng : own_rng;
    r.prompt_tokens.push_back(static_cast<int32_t>(lo + rng() % uint64_t(hi - lo)));
  }
  r.max_tokens = o.output_len;
  r.ignore_eos = true;
  r.sampling.temperature = o.temperature;
  r.sampling.seed = o.seed + uint64_t(index);
  return r;
}

int run_closed_loop(const BenchOptions& o, Engine& engine, StepLog& log, int32_t n_vocab, const std::string& description) {
  Driver driver(engine, o, n_vocab);
  ClosedLoopReport report(o, description);
  if (o.warmup_requests > 0)
    report.set_warmup(driver.run_level(std::min(o.warmup_requests, o.users.front()), 0, o.warmup_requests));
  for (int users : o.users) {
    size_t first_step;
    {
      std::lock_guard lock(log.mutex);
      first_step = log.steps.size();
    }
    const EngineStats before = engine.stats();
    loadtest::LevelResult level;
    level.plan.concurrency = users;
    level.plan.duration_s = o.level_time_s;
    level.plan.seed = o.seed;
    level.run = driver.run_level(users, o.level_time_s, 0);
    level.stats = loadtest::compute_level_stats(level.run.records, loadtest::Slo{});
    {
      std::lock_guard lock(log.mutex);
      const std::vector<StepStats> steps(log.steps.begin() + long(first_step), log.steps.end());
      level.server = engine_counters(steps, before, engine.stats());
    }
    report.add_level(std::move(level));
  }
  return report.finish();
}

}  // namespace ds4
