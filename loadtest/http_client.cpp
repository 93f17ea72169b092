// HttpClient and StreamingRequest (see http_client.h). A StreamingRequest owns one connection for
// its lifetime and runs every handler on that connection's strand; the client's mutex guards only
// the idle pool and the registry of requests in flight (for cancel_all).
// A reused keep-alive connection that the server already closed is retried once on a new one.
#include "loadtest/http_client.h"

#include <algorithm>
#include <optional>

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <simdjson.h>

#include "loadtest/sse.h"

namespace ds4::loadtest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string parse_target_url(const std::string& url, Target* out) {
  *out = Target{};
  const std::string scheme = "http://";
  if (url.rfind("https://", 0) == 0) return "https is not supported; use an http:// URL";
  if (url.rfind(scheme, 0) != 0) return "URL '" + url + "' must start with http://";
  std::string rest = url.substr(scheme.size());
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  out->base_path = slash == std::string::npos ? "" : rest.substr(slash);
  while (!out->base_path.empty() && out->base_path.back() == '/') out->base_path.pop_back();
  if (authority.empty()) return "URL '" + url + "' has no host";
  size_t colon = authority.rfind(':');
  bool bracketed = authority.front() == '[';
  if (colon != std::string::npos && (!bracketed || authority.find(']') < colon)) {
    out->port = authority.substr(colon + 1);
    authority = authority.substr(0, colon);
    if (out->port.empty() || out->port.find_first_not_of("0123456789") != std::string::npos ||
        std::stol(out->port) < 1 || std::stol(out->port) > 65535)
      return "URL '" + url + "' has a bad port";
  }
  if (bracketed) {
    if (authority.back() != ']') return "URL '" + url + "' has a bad IPv6 host";
    authority = authority.substr(1, authority.size() - 2);
  }
  out->host = authority;
  return "";
}

// One streaming POST: connect (or reuse) -> write -> read header -> read body piece by piece,
// feeding the SSE parser with each piece's arrival time.
class StreamingRequest : public std::enable_shared_from_this<StreamingRequest> {
 public:
  StreamingRequest(HttpClient& client, uint64_t id, std::string path, std::string body,
                   RequestRecord record, HttpClient::OnDone on_done,
                   std::unique_ptr<beast::tcp_stream> stream, bool reused)
      : client_(client), id_(id), record_(std::move(record)), on_done_(std::move(on_done)),
        stream_(std::move(stream)), reused_(reused) {
    request_.method(http::verb::post);
    request_.target(path);
    request_.version(11);
    request_.set(http::field::host, client.target_.host + ":" + client.target_.port);
    request_.set(http::field::content_type, "application/json");
    request_.set(http::field::accept, "text/event-stream");
    request_.set(http::field::user_agent, "ds4serve-load");
    if (!client.auth_header_.empty()) request_.set(http::field::authorization, client.auth_header_);
    request_.body() = std::move(body);
    request_.prepare_payload();
  }

  // Called on the issuing thread; all later work runs on the connection's strand.
  void start() {
    start_tp_ = HttpClient::Clock::now();
    record_.start_s = std::chrono::duration<double>(start_tp_ - client_.epoch_).count();
    deadline_ = start_tp_ + std::chrono::duration_cast<HttpClient::Clock::duration>(
                                std::chrono::duration<double>(client_.timeout_s_));
    asio::post(stream_->get_executor(), [self = shared_from_this()] {
      if (self->cancelled_) return self->finish(ErrorKind::kCancelled, "stopped", false);
      self->reused_ ? self->write() : self->connect();
    });
  }

  void cancel() {
    asio::post(stream_->get_executor(), [self = shared_from_this()] {
      self->cancelled_ = true;
      if (self->stream_) self->stream_->socket().close();
    });
  }

 private:
  double now_s() const {
    return std::chrono::duration<double>(HttpClient::Clock::now() - start_tp_).count();
  }

  void connect() {
    stage_ = Stage::kConnect;
    stream_->expires_at(deadline_);
    stream_->async_connect(client_.endpoints_, [self = shared_from_this()](
                                                   beast::error_code ec, const tcp::endpoint&) {
      if (ec) return self->transport_error(ec);
      self->stream_->socket().set_option(tcp::no_delay(true));
      self->write();
    });
  }

  void write() {
    stage_ = Stage::kWrite;
    stream_->expires_at(deadline_);
    http::async_write(*stream_, request_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->transport_error(ec);
      self->read_header();
    });
  }

  void read_header() {
    stage_ = Stage::kHeader;
    parser_.emplace();
    parser_->body_limit(boost::none);  // a stream is as long as the server makes it
    buffer_.clear();
    stream_->expires_at(deadline_);
    http::async_read_header(*stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->transport_error(ec);
                              self->on_header();
                            });
  }

  void on_header() {
    stage_ = Stage::kBody;
    const auto& res = parser_->get();
    record_.http_status = static_cast<int>(res.result_int());
    error_status_ = res.result() != http::status::ok;
    std::string_view type = res[http::field::content_type];
    if (!error_status_ && type.find("text/event-stream") == std::string_view::npos) {
      not_sse_type_ = std::string(type.empty() ? "(none)" : type);
    }
    if (parser_->is_done()) return body_done(now_s());
    read_body();
  }

  void read_body() {
    auto& body = parser_->get().body();
    body.data = body_buf_;
    body.size = sizeof body_buf_;
    body.more = true;
    stream_->expires_at(deadline_);
    http::async_read_some(*stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t) {
                            self->on_body(ec);
                          });
  }

  void on_body(beast::error_code ec) {
    double t = now_s();
    if (ec == http::error::need_buffer) ec = {};
    size_t got = sizeof body_buf_ - parser_->get().body().size;
    body_bytes_ += got;
    if (got > 0) handle_bytes(std::string_view(body_buf_, got), t);
    if (ec) return transport_error(ec);
    if (parser_->is_done()) return body_done(t);
    read_body();
  }

  void handle_bytes(std::string_view bytes, double t) {
    if (error_status_ || !not_sse_type_.empty()) {
      size_t room = kErrorBodyBytes - std::min(kErrorBodyBytes, other_body_.size());
      other_body_.append(bytes.substr(0, room));
      return;
    }
    sse_.feed(bytes, [&](std::string_view data) { handle_event(data, t); });
    if (sse_.pending_bytes() > kMaxEventBytes && stream_error_ == ErrorKind::kNone) {
      stream_error_ = ErrorKind::kProtocol;  // a server that never ends its event: stop buffering
      stream_error_detail_ = "an SSE event grew past 64 MiB without ending";
      sse_ = SseParser{};
    }
  }

  void handle_event(std::string_view data, double t) {
    StreamEvent ev;
    std::string err = parse_stream_event(json_, data, &ev);
    if (!err.empty()) {
      if (stream_error_ == ErrorKind::kNone) stream_error_ = ErrorKind::kProtocol, stream_error_detail_ = err;
      return;
    }
    if (ev.done) {
      if (!saw_done_) record_.end_s = t;
      saw_done_ = true;
      return;
    }
    if (ev.is_error && stream_error_ == ErrorKind::kNone) {
      stream_error_ = ErrorKind::kStreamError;
      stream_error_detail_ = ev.error_message;
    }
    if (ev.prompt_tokens >= 0) record_.usage_prompt_tokens = ev.prompt_tokens;
    if (ev.completion_tokens >= 0) record_.usage_completion_tokens = ev.completion_tokens;
    if (!ev.finish_reason.empty()) record_.finish_reason = ev.finish_reason;
    if (ev.has_choices && !record_.ttfr_s) record_.ttfr_s = t;
    if (ev.has_token) {
      if (!record_.ttft_s) record_.ttft_s = t;
      record_.token_times_s.push_back(t);
    }
  }

  void body_done(double t) {
    if (!error_status_) sse_.finish([&](std::string_view data) { handle_event(data, t); });
    if (!saw_done_) record_.end_s = t;
    bool reusable = parser_->keep_alive();
    if (error_status_) {
      std::string detail = "HTTP " + std::to_string(record_.http_status);
      if (!other_body_.empty()) detail += ": " + other_body_;
      return finish(ErrorKind::kHttpStatus, detail, reusable);
    }
    if (!not_sse_type_.empty())
      return finish(ErrorKind::kProtocol, "response Content-Type is " + not_sse_type_ +
                                              ", not text/event-stream", reusable);
    if (stream_error_ != ErrorKind::kNone) return finish(stream_error_, stream_error_detail_, reusable);
    finish(ErrorKind::kNone, "", reusable);
  }

  void transport_error(beast::error_code ec) {
    if (cancelled_) return finish(ErrorKind::kCancelled, "stopped", false);
    if (saw_done_) return finish(ErrorKind::kNone, "", false);  // the stream was complete already
    if (ec == beast::error::timeout) {
      static constexpr const char* kStageNames[] = {"connecting", "sending the request",
                                                    "waiting for the response header", "reading the body"};
      return finish(ErrorKind::kTimeout,
                    std::string("request timeout while ") + kStageNames[static_cast<int>(stage_)] +
                        (reused_ ? " (reused connection)" : " (new connection)") + ", after " +
                        std::to_string(body_bytes_) + " body bytes and " +
                        std::to_string(record_.token_times_s.size()) + " token events",
                    false);
    }
    // A pooled connection the server closed while idle fails on write or before any header byte.
    bool stale = reused_ && !retried_ && (stage_ == Stage::kWrite || stage_ == Stage::kHeader) &&
                 buffer_.size() == 0;
    if (stale) {
      retried_ = true;
      reused_ = false;
      stream_ = std::make_unique<beast::tcp_stream>(stream_->get_executor());  // same strand
      return connect();
    }
    if (stage_ == Stage::kConnect) return finish(ErrorKind::kConnect, ec.message(), false);
    finish(ErrorKind::kDisconnect,
           "connection ended (" + ec.message() + ") after " +
               std::to_string(record_.token_times_s.size()) + " token events",
           false);
  }

  void finish(ErrorKind kind, std::string detail, bool reusable) {
    if (finished_) return;
    finished_ = true;
    record_.error = kind;
    record_.error_detail = std::move(detail);
    if (!saw_done_ && record_.end_s == 0) record_.end_s = now_s();
    client_.forget(id_);
    if (reusable && !cancelled_ && stream_) {
      stream_->expires_never();
      client_.put_idle(std::move(stream_));
    } else if (stream_) {
      beast::error_code ignored;
      stream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream_->close();
    }
    auto on_done = std::move(on_done_);
    on_done(std::move(record_));
  }

  enum class Stage { kConnect, kWrite, kHeader, kBody };
  static constexpr size_t kErrorBodyBytes = 600;
  static constexpr size_t kMaxEventBytes = size_t{64} << 20;

  HttpClient& client_;
  uint64_t id_;
  RequestRecord record_;
  HttpClient::OnDone on_done_;
  std::unique_ptr<beast::tcp_stream> stream_;
  http::request<http::string_body> request_;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  char body_buf_[16384];
  SseParser sse_;
  simdjson::dom::parser json_;
  HttpClient::Clock::time_point start_tp_, deadline_;
  Stage stage_ = Stage::kConnect;
  bool reused_ = false;
  bool retried_ = false, cancelled_ = false, finished_ = false, saw_done_ = false;
  bool error_status_ = false;
  uint64_t body_bytes_ = 0;   // response body bytes received (for error details)
  std::string not_sse_type_;  // set when a 200 answer is not an event stream
  std::string other_body_;    // first bytes of an error or non-SSE body
  ErrorKind stream_error_ = ErrorKind::kNone;
  std::string stream_error_detail_;
};

HttpClient::HttpClient(asio::io_context& ioc, Target target, std::string api_key, double timeout_s,
                       Clock::time_point epoch)
    : ioc_(ioc), target_(std::move(target)), timeout_s_(timeout_s), epoch_(epoch) {
  if (!api_key.empty()) auth_header_ = "Bearer " + api_key;
}

HttpClient::~HttpClient() = default;

std::string HttpClient::resolve() {
  tcp::resolver resolver(ioc_);
  beast::error_code ec;
  endpoints_ = resolver.resolve(target_.host, target_.port, ec);
  if (ec) return "cannot resolve " + target_.host + ":" + target_.port + " (" + ec.message() + ")";
  return "";
}

double HttpClient::seconds_since_epoch() const {
  return std::chrono::duration<double>(Clock::now() - epoch_).count();
}

std::unique_ptr<beast::tcp_stream> HttpClient::take_idle() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (idle_.empty()) return nullptr;
  auto s = std::move(idle_.back());
  idle_.pop_back();
  return s;
}

void HttpClient::put_idle(std::unique_ptr<beast::tcp_stream> stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  idle_.push_back(std::move(stream));
}

void HttpClient::forget(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  active_.erase(id);
}

void HttpClient::start_stream(const std::string& path, std::string body, RequestRecord record,
                              OnDone on_done) {
  auto stream = take_idle();
  bool reused = stream != nullptr;
  if (!stream) stream = std::make_unique<beast::tcp_stream>(asio::make_strand(ioc_));
  std::shared_ptr<StreamingRequest> req;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    uint64_t id = next_id_++;
    req = std::make_shared<StreamingRequest>(*this, id, target_.base_path + path, std::move(body),
                                             std::move(record), std::move(on_done),
                                             std::move(stream), reused);
    active_[id] = req;
  }
  req->start();
}

void HttpClient::cancel_all() {
  std::vector<std::shared_ptr<StreamingRequest>> live;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [id, weak] : active_)
      if (auto p = weak.lock()) live.push_back(std::move(p));
  }
  for (auto& p : live) p->cancel();
}

namespace {

// A GET on its own connection, read whole into a string.
class SimpleGet : public std::enable_shared_from_this<SimpleGet> {
 public:
  SimpleGet(asio::io_context& ioc, const Target& target, const std::string& auth, std::string path,
            double timeout_s, std::function<void(GetResult)> on_done)
      : stream_(asio::make_strand(ioc)), timeout_s_(timeout_s), on_done_(std::move(on_done)) {
    request_.method(http::verb::get);
    request_.target(target.base_path + path);
    request_.version(11);
    request_.set(http::field::host, target.host + ":" + target.port);
    request_.set(http::field::user_agent, "ds4serve-load");
    if (!auth.empty()) request_.set(http::field::authorization, auth);
    parser_.body_limit(16u << 20);
  }

  void run(const tcp::resolver::results_type& endpoints) {
    stream_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(timeout_s_)));
    stream_.async_connect(endpoints, [self = shared_from_this()](beast::error_code ec,
                                                                  const tcp::endpoint&) {
      if (ec) return self->done(ec);
      http::async_write(self->stream_, self->request_, [self](beast::error_code ec, size_t) {
        if (ec) return self->done(ec);
        http::async_read(self->stream_, self->buffer_, self->parser_,
                         [self](beast::error_code ec, size_t) { self->done(ec); });
      });
    });
  }

 private:
  void done(beast::error_code ec) {
    GetResult r;
    if (ec) {
      r.error = ec.message();
    } else {
      r.status = static_cast<int>(parser_.get().result_int());
      r.body = std::move(parser_.get().body());
    }
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    on_done_(std::move(r));
  }

  beast::tcp_stream stream_;
  double timeout_s_;
  std::function<void(GetResult)> on_done_;
  http::request<http::empty_body> request_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
};

}  // namespace

void HttpClient::get(const std::string& path, double timeout_s, std::function<void(GetResult)> on_done) {
  auto g = std::make_shared<SimpleGet>(ioc_, target_, auth_header_, path, timeout_s, std::move(on_done));
  g->run(endpoints_);
}

GetResult HttpClient::get_blocking(const std::string& path, double timeout_s) {
  GetResult result;
  ioc_.restart();
  get(path, timeout_s, [&](GetResult r) { result = std::move(r); });
  ioc_.run();
  return result;
}

}  // namespace ds4::loadtest
