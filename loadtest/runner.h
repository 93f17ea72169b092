// Runner: drives one load level against the server: closed loop (a fixed number of users, each
// sending its next request when the previous ends) or open loop (arrivals at a rate, optionally
// capped in concurrency; arrivals over the cap wait in a client queue). All its state lives on one
// strand; requests run on their own strands (HttpClient). Used by main.cpp.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "loadtest/arrivals.h"
#include "loadtest/http_client.h"
#include "loadtest/workload.h"

namespace ds4::loadtest {

enum class LoadMode { kClosed, kOpen };

struct LevelPlan {
  LoadMode mode = LoadMode::kClosed;
  int64_t concurrency = 1;     // closed: number of users; open: cap on requests in flight (0: none)
  double rate_per_s = 0;       // open loop only
  double burstiness = 1;       // open loop only (1: Poisson)
  int64_t num_requests = 0;    // issue at most this many (0: no count limit)
  double duration_s = 0;       // stop issuing after this many seconds (0: no time limit)
  uint64_t seed = 1;           // arrival process seed
};

// Live counters for the progress bar.
struct Progress {
  int64_t issued = 0, completed = 0, failed = 0, in_flight = 0, queued = 0;
  int64_t target_requests = 0;  // 0 when only the duration bounds the level
  double target_duration_s = 0;
  double elapsed_s = 0;
  int64_t output_tokens = 0;
};

struct LevelRun {
  std::vector<RequestRecord> records;  // every issued request, in completion order
  bool interrupted = false;            // the stop flag was raised during the level
  int64_t dropped_arrivals = 0;        // open loop: arrivals still queued when the level stopped
};

class Runner {
 public:
  using ProgressFn = std::function<void(const Progress&)>;
  // stop_flag: raised (non-zero) by a signal handler; polled every tick.
  Runner(boost::asio::io_context& ioc, HttpClient& client, const Workload& workload, std::string path,
         int io_threads, const std::atomic<int>* stop_flag, ProgressFn progress);

  // Runs the level to completion (requests in flight when issuing stops are waited for, up to the
  // request timeout). first_index: workload index of the level's first request.
  LevelRun run_level(const LevelPlan& plan, int64_t first_index);

 private:
  void begin();
  void tick();
  bool may_issue() const;
  void issue(double queue_s);
  void on_complete(RequestRecord record);
  void schedule_arrival();
  void on_arrival();
  void stop_issuing();
  void maybe_finish();
  double level_elapsed_s() const;
  Progress snapshot() const;

  boost::asio::io_context& ioc_;
  HttpClient& client_;
  const Workload& workload_;
  std::string path_;
  int io_threads_;
  const std::atomic<int>* stop_flag_;
  ProgressFn progress_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer tick_timer_, arrival_timer_;

  // Per-level state (strand only).
  LevelPlan plan_;
  LevelRun run_;
  int64_t next_index_ = 0;
  int64_t issued_ = 0, in_flight_ = 0, completed_ = 0, failed_ = 0, output_tokens_ = 0;
  bool issuing_ = false, finished_ = false;
  HttpClient::Clock::time_point level_start_;
  std::optional<ArrivalProcess> arrivals_;
  HttpClient::Clock::time_point next_arrival_;
  std::deque<HttpClient::Clock::time_point> queued_;  // open loop: arrivals waiting for the cap
};

}  // namespace ds4::loadtest
