// HttpClient: the Beast HTTP/1.1 client of ds4serve-load. Many streaming requests run concurrently
// on one io_context (any number of threads; each connection has its own strand); idle keep-alive
// connections are pooled and reused. Every request ends exactly once, through its callback, with a
// RequestRecord (timings on the steady clock). Used by the runner, the /metrics scraper and main.cpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "loadtest/request_record.h"

namespace ds4::loadtest {

// Where requests go: http://host[:port][/base]. https is not supported (clear error).
struct Target {
  std::string host;
  std::string port = "80";
  std::string base_path;  // no trailing '/', may be empty ("/v1" style bases are kept)
};
std::string parse_target_url(const std::string& url, Target* out);

struct GetResult {
  int status = 0;          // 0 when no response came
  std::string body;
  std::string error;       // "" or why there is no response
};

class StreamingRequest;

class HttpClient {
 public:
  using Clock = std::chrono::steady_clock;
  using OnDone = std::function<void(RequestRecord)>;

  HttpClient(boost::asio::io_context& ioc, Target target, std::string api_key, double timeout_s,
             Clock::time_point epoch);
  ~HttpClient();
  // Resolves the host (blocking). Returns "" or an error naming the host.
  std::string resolve();

  // Issues a streaming POST of body to base_path + path. record carries the caller's fields (index,
  // expected tokens, queue time); the client fills the rest. on_done runs once, on an io thread.
  void start_stream(const std::string& path, std::string body, RequestRecord record, OnDone on_done);
  // A plain GET (for /metrics and /v1/models), on its own connection; body capped at 16 MiB.
  void get(const std::string& path, double timeout_s, std::function<void(GetResult)> on_done);
  // Blocking GET for start-up and between levels: runs the io_context itself. Only call while no
  // other work is running on it.
  GetResult get_blocking(const std::string& path, double timeout_s);
  // Ends every request in flight (they report kCancelled). Thread-safe.
  void cancel_all();

  double seconds_since_epoch() const;
  const Target& target() const { return target_; }

 private:
  friend class StreamingRequest;
  std::unique_ptr<boost::beast::tcp_stream> take_idle();
  void put_idle(std::unique_ptr<boost::beast::tcp_stream> stream);
  void forget(uint64_t id);

  boost::asio::io_context& ioc_;
  Target target_;
  std::string auth_header_;  // "Bearer <key>" or ""
  double timeout_s_;
  Clock::time_point epoch_;
  boost::asio::ip::tcp::resolver::results_type endpoints_;

  std::mutex mutex_;  // guards idle_, active_, next_id_
  std::vector<std::unique_ptr<boost::beast::tcp_stream>> idle_;
  std::unordered_map<uint64_t, std::weak_ptr<StreamingRequest>> active_;
  uint64_t next_id_ = 0;
};

}  // namespace ds4::loadtest
