// Runner (see runner.h). Level lifecycle on the runner strand: begin -> issue requests (closed loop:
// refill on each completion; open loop: on each arrival, or from the client queue) -> stop issuing
// (count or duration reached, or stop flag) -> wait for requests in flight -> finished; the
// io_context then runs out of work and run_level returns.
#include "loadtest/runner.h"

#include <thread>

#include <boost/asio/post.hpp>

namespace ds4::loadtest {

namespace asio = boost::asio;
using Clock = HttpClient::Clock;

namespace {
constexpr auto kTick = std::chrono::milliseconds(100);
}

Runner::Runner(asio::io_context& ioc, HttpClient& client, const Workload& workload, std::string path,
               int io_threads, const std::atomic<int>* stop_flag, ProgressFn progress)
    : ioc_(ioc), client_(client), workload_(workload), path_(std::move(path)),
      io_threads_(std::max(1, io_threads)), stop_flag_(stop_flag), progress_(std::move(progress)),
      strand_(asio::make_strand(ioc)), tick_timer_(strand_), arrival_timer_(strand_) {}

LevelRun Runner::run_level(const LevelPlan& plan, int64_t first_index) {
  plan_ = plan;
  run_ = LevelRun{};
  next_index_ = first_index;
  issued_ = in_flight_ = completed_ = failed_ = output_tokens_ = 0;
  issuing_ = true;
  finished_ = false;
  queued_.clear();
  arrivals_.reset();
  if (plan_.mode == LoadMode::kOpen) arrivals_.emplace(plan_.rate_per_s, plan_.burstiness, plan_.seed);
  ioc_.restart();
  asio::post(strand_, [this] { begin(); });
  std::vector<std::thread> helpers;
  for (int i = 1; i < io_threads_; ++i) helpers.emplace_back([this] { ioc_.run(); });
  ioc_.run();
  for (auto& t : helpers) t.join();
  return std::move(run_);
}

double Runner::level_elapsed_s() const {
  return std::chrono::duration<double>(Clock::now() - level_start_).count();
}

void Runner::begin() {
  level_start_ = Clock::now();
  if (plan_.mode == LoadMode::kClosed) {
    for (int64_t i = 0; i < plan_.concurrency && may_issue(); ++i) issue(0);
  } else {
    next_arrival_ = level_start_;
    on_arrival();
  }
  tick();
  maybe_finish();
}

// Whether a new request (closed loop) or arrival (open loop) may still start.
bool Runner::may_issue() const {
  if (!issuing_) return false;
  int64_t started = issued_ + static_cast<int64_t>(queued_.size());
  if (plan_.num_requests > 0 && started >= plan_.num_requests) return false;
  if (plan_.duration_s > 0 && level_elapsed_s() >= plan_.duration_s) return false;
  return true;
}

void Runner::issue(double queue_s) {
  RequestSpec spec = workload_.make(next_index_);
  RequestRecord record;
  record.index = next_index_++;
  record.queue_s = queue_s;
  record.expected_input_tokens = spec.expected_input_tokens;
  record.max_tokens = spec.max_tokens;
  ++issued_;
  ++in_flight_;
  client_.start_stream(path_, std::move(spec.body), std::move(record), [this](RequestRecord r) {
    asio::post(strand_, [this, r = std::move(r)]() mutable { on_complete(std::move(r)); });
  });
}

void Runner::on_complete(RequestRecord record) {
  --in_flight_;
  if (record.ok()) {
    ++completed_;
    output_tokens_ += record.output_tokens();
  } else {
    ++failed_;
  }
  run_.records.push_back(std::move(record));
  if (plan_.mode == LoadMode::kClosed) {
    if (may_issue()) issue(0);
  } else if (!queued_.empty() && issuing_) {
    double waited = std::chrono::duration<double>(Clock::now() - queued_.front()).count();
    queued_.pop_front();
    issue(waited);
  }
  maybe_finish();
}

void Runner::on_arrival() {
  if (!may_issue()) {
    arrivals_.reset();  // no more arrivals in this level
    return maybe_finish();
  }
  bool under_cap = plan_.concurrency <= 0 || in_flight_ < plan_.concurrency;
  if (under_cap) issue(0);
  else queued_.push_back(Clock::now());
  schedule_arrival();
}

void Runner::schedule_arrival() {
  next_arrival_ += std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(arrivals_->next_gap_s()));
  arrival_timer_.expires_at(next_arrival_);
  arrival_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec || !arrivals_) return;
    on_arrival();
  });
}

void Runner::stop_issuing() {
  if (!issuing_) return;
  issuing_ = false;
  arrivals_.reset();
  arrival_timer_.cancel();
  run_.dropped_arrivals += static_cast<int64_t>(queued_.size());
  queued_.clear();
  maybe_finish();
}

void Runner::tick() {
  if (finished_) return;
  if (stop_flag_ && stop_flag_->load() != 0 && !run_.interrupted) {
    run_.interrupted = true;
    stop_issuing();
    client_.cancel_all();
  }
  if (issuing_ && plan_.duration_s > 0 && level_elapsed_s() >= plan_.duration_s) stop_issuing();
  if (progress_) progress_(snapshot());
  if (finished_) return;
  tick_timer_.expires_after(kTick);
  tick_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) tick();
  });
}

void Runner::maybe_finish() {
  if (finished_ || in_flight_ > 0 || !queued_.empty()) return;
  bool more = plan_.mode == LoadMode::kClosed ? may_issue() : (arrivals_.has_value() && issuing_);
  if (more) return;
  finished_ = true;
  tick_timer_.cancel();
  arrival_timer_.cancel();
  if (progress_) progress_(snapshot());
}

Progress Runner::snapshot() const {
  Progress p;
  p.issued = issued_;
  p.completed = completed_;
  p.failed = failed_;
  p.in_flight = in_flight_;
  p.queued = static_cast<int64_t>(queued_.size());
  p.target_requests = plan_.num_requests;
  p.target_duration_s = plan_.duration_s;
  p.elapsed_s = level_elapsed_s();
  p.output_tokens = output_tokens_;
  return p;
}

}  // namespace ds4::loadtest
