// /v1/chat/completions and /v1/completions: parse -> prepare -> submit to the engine -> relay the
// request's token stream as SSE or one JSON body. The engine's edge-triggered notify posts onto the
// connection's strand and wakes the relay's timer, so no io thread ever blocks on the engine. A
// watcher waits for the client to close its side; whichever ends first cancels the other, and the
// request is aborted in the engine (its KV freed at the next step) unless it already finished.
#include <boost/asio/experimental/awaitable_operators.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <cstdio>

#include "http/generation_prepare.h"
#include "http/request_limits.h"
#include "http/session.h"

namespace ds4::http {

namespace {

using namespace boost::asio::experimental::awaitable_operators;
constexpr auto kAwaitable = net::as_tuple(net::use_awaitable);

// Wakes the relay coroutine from the engine thread: posts a timer cancel onto the strand.
struct Waker : std::enable_shared_from_this<Waker> {
  explicit Waker(net::any_io_executor ex) : timer(ex) {}
  net::steady_timer timer;
  RequestStream::Notify notify() {
    std::weak_ptr<Waker> weak = weak_from_this();
    return [weak] {
      if (auto w = weak.lock()) net::post(w->timer.get_executor(), [w] { w->timer.cancel(); });
    };
  }
};

// "chatcmpl-" / "cmpl-" + 24 hex digits from the service's seed generator (unique per request).
std::string request_id(const char* prefix, ModelService& service) {
  char hex[32];
  std::snprintf(hex, sizeof hex, "%016llx%08llx", static_cast<unsigned long long>(service.next_seed()),
                static_cast<unsigned long long>(service.next_seed() & 0xffffffffull));
  return prefix + std::string(hex);
}

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
bool stamped(Clock::time_point t) { return t != Clock::time_point{}; }

// One generation being relayed: the builder, the engine stream and the metrics bookkeeping.
class Relay {
 public:
  Relay(Stream& stream, ServerState& state, ModelService& service, const ResponseContext& ctx, PreparedGeneration& prep,
        Clock::time_point arrival)
      : stream_(stream), state_(state), service_(service), ctx_(ctx), arrival_(arrival),
        builder_(service.tokenizer(), prep.setup, prep.stream_options), streaming_(prep.setup.stream),
        prompt_tokens_(static_cast<int64_t>(prep.request.prompt_tokens.size())), max_tokens_(prep.request.max_tokens) {
    builder_.add_forced(prep.forced_tokens);
  }

  // Submits; an immediately finished stream means the engine refused (queue full or stopping).
  std::optional<ApiError> submit(GenerationRequest request, std::shared_ptr<Waker> waker) {
    waker_ = std::move(waker);
    rs_ = service_.engine().submit(std::move(request), waker_->notify());
    if (rs_->finished()) {
      StreamChunk c;
      rs_->poll(c);
      if (c.finish_reason == FinishReason::kError)
        return unavailable("The server cannot take the request now: " + c.error, "server_overloaded", 1);
    }
    return std::nullopt;
  }

  net::awaitable<void> pump();
  net::awaitable<void> watch_client();
  // The response is fully determined by the prompt (a forced call of a function without
  // parameters): nothing is sampled.
  net::awaitable<void> complete_forced();
  // Ends the request in the engine (ignored when it already finished) and records an abort.
  void cancel();

  RouteResult result;
  bool done = false;

 private:
  net::awaitable<bool> write_chunk(const std::string& data);
  net::awaitable<bool> send_header();
  net::awaitable<void> on_chunk(StreamChunk& chunk);
  net::awaitable<void> finish(FinishReason reason, const StreamChunk& last);
  void record_tokens(const StreamChunk& chunk);
  void record_finished(const std::string& reason, const RequestTiming& timing);

  Stream& stream_;
  ServerState& state_;
  ModelService& service_;
  const ResponseContext& ctx_;
  Clock::time_point arrival_;
  ResponseBuilder builder_;
  bool streaming_;
  int64_t prompt_tokens_, max_tokens_;
  std::shared_ptr<Waker> waker_;
  std::shared_ptr<RequestStream> rs_;
  bool header_sent_ = false;
  bool first_token_seen_ = false;
  Clock::time_point last_token_time_{};
  RequestTiming timing_;
  std::vector<double> gaps_;
};

net::awaitable<bool> Relay::send_header() {
  bhttp::response<bhttp::empty_body> res{bhttp::status::ok, ctx_.version};
  res.set(bhttp::field::content_type, "text/event-stream");
  res.set(bhttp::field::cache_control, "no-cache");
  res.set("X-Accel-Buffering", "no");
  if (!ctx_.cors_origin.empty()) res.set(bhttp::field::access_control_allow_origin, ctx_.cors_origin);
  res.keep_alive(ctx_.keep_alive);
  res.chunked(true);
  bhttp::response_serializer<bhttp::empty_body> sr{res};
  stream_.expires_after(std::chrono::seconds(ctx_.write_timeout_seconds));
  auto [ec, n] = co_await bhttp::async_write_header(stream_, sr, kAwaitable);
  header_sent_ = !ec;
  result.written = true;
  result.status = 200;
  result.ok = !ec;
  co_return !ec;
}

net::awaitable<bool> Relay::write_chunk(const std::string& data) {
  if (data.empty()) co_return true;
  stream_.expires_after(std::chrono::seconds(ctx_.write_timeout_seconds));
  auto [ec, n] = co_await net::async_write(stream_, bhttp::make_chunk(net::buffer(data)), kAwaitable);
  if (ec) result.ok = false;
  co_return !ec;
}

void Relay::record_tokens(const StreamChunk& chunk) {
  const auto now = Clock::now();
  const size_t n = chunk.tokens.size();
  if (n == 0) return;
  ServerMetrics& m = service_.metrics();
  gaps_.clear();
  if (!first_token_seen_) {
    first_token_seen_ = true;
    const auto first = stamped(chunk.timing.first_token) ? chunk.timing.first_token : now;
    m.record_first_token(seconds(arrival_, first), prompt_tokens_);
    // Tokens that arrived together with the first one share the time since it.
    for (size_t i = 1; i < n; ++i) gaps_.push_back(seconds(first, now) / double(n - 1));
  } else {
    for (size_t i = 0; i < n; ++i) gaps_.push_back(seconds(last_token_time_, now) / double(n));
  }
  last_token_time_ = now;
  m.record_generated(static_cast<int64_t>(n), gaps_.data(), gaps_.size());
}

void Relay::record_finished(const std::string& reason, const RequestTiming& t) {
  const auto now = Clock::now();
  const auto end = stamped(t.finished) ? t.finished : now;
  FinishedRequest f;
  f.finished_reason = reason;
  f.prompt_tokens = prompt_tokens_;
  f.generation_tokens = builder_.completion_tokens();
  f.max_tokens_param = max_tokens_;
  f.e2e_seconds = seconds(arrival_, end);
  if (stamped(t.first_scheduled)) {
    f.queue_seconds = seconds(stamped(t.queued) ? t.queued : arrival_, t.first_scheduled);
    f.inference_seconds = seconds(t.first_scheduled, end);
    if (stamped(t.first_token)) f.prefill_seconds = seconds(t.first_scheduled, t.first_token);
  }
  if (stamped(t.first_token)) f.decode_seconds = seconds(t.first_token, end);
  service_.metrics().record_finished(f);
}

net::awaitable<void> Relay::finish(FinishReason reason, const StreamChunk& last) {
  done = true;
  if (reason == FinishReason::kError) {
    record_finished("error", last.timing);
    const ApiError e = internal_error("Generation failed: " + last.error);
    if (streaming_) co_await write_chunk(ResponseBuilder::stream_error(e));
    else result.reply = error_reply(e);
    co_return;
  }
  std::string out = builder_.finish(reason, last.usage);
  record_finished(builder_.finish_reason(), last.timing);
  const AssistantMessage& m = builder_.message();
  if (!m.tool_calls.empty() && !m.raw_dsml.empty()) {  // so a resent history replays the exact bytes
    std::vector<std::string> ids;
    for (const ToolCall& c : m.tool_calls) ids.push_back(c.id);
    service_.replay().remember(ids, m.raw_dsml);
  }
  if (streaming_) {
    if (co_await write_chunk(out)) {
      auto [ec, n] = co_await net::async_write(stream_, bhttp::make_chunk_last(), kAwaitable);
      if (ec) result.ok = false;
    }
  } else {
    result.reply = json_reply(std::move(out));
  }
}

net::awaitable<void> Relay::on_chunk(StreamChunk& chunk) {
  timing_ = chunk.timing;
  // The token that ended the request (EOS or a stop id) is counted but shows no text.
  std::span<const int32_t> tokens(chunk.tokens);
  record_tokens(chunk);
  std::string sse;
  builder_.add_tokens(tokens, chunk.logprobs, sse);
  if (streaming_ && !co_await write_chunk(sse)) co_return;
  if (builder_.stopped()) {  // a stop string matched: the text side ends the request
    service_.engine().abort(rs_->id());
    chunk.timing.finished = Clock::now();
    co_await finish(FinishReason::kStop, chunk);
    co_return;
  }
  if (chunk.finished()) co_await finish(chunk.finish_reason, chunk);
}

net::awaitable<void> Relay::pump() {
  if (streaming_ && !co_await send_header()) co_return;
  StreamChunk chunk;
  while (!done && result.ok) {
    if (rs_->poll(chunk)) {
      co_await on_chunk(chunk);
      continue;
    }
    waker_->timer.expires_after(std::chrono::milliseconds(state_.options.limits.heartbeat_ms));
    auto [ec] = co_await waker_->timer.async_wait(kAwaitable);
    const auto cs = co_await net::this_coro::cancellation_state;
    if (cs.cancelled() != net::cancellation_type::none) co_return;  // the client went away
    if (!ec && streaming_ && !builder_.first_text_sent())  // still prefilling: keep the connection alive
      if (!co_await write_chunk(ResponseBuilder::heartbeat())) co_return;
  }
}

// Completes when the client has closed its side (or reset the connection). A client that sends
// more data (a pipelined request) is alive: then this waits until cancelled. Readiness can be
// reported without data (Asio completes a wait speculatively after earlier reads), so the peek
// never blocks, and a spurious wake-up backs off briefly instead of spinning.
net::awaitable<void> Relay::watch_client() {
  auto& socket = stream_.socket();
  net::steady_timer backoff(co_await net::this_coro::executor);
  for (;;) {
    auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, kAwaitable);
    if (ec == net::error::operation_aborted) co_return;
    char byte;
    const ssize_t n = ec ? 0 : ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) co_return;  // closed or reset
    if (n > 0) {  // a pipelined request: the client is there
      backoff.expires_at(net::steady_timer::time_point::max());
      co_await backoff.async_wait(kAwaitable);
      co_return;
    }
    backoff.expires_after(std::chrono::milliseconds(50));
    auto [bec] = co_await backoff.async_wait(kAwaitable);
    if (bec) co_return;
  }
}

net::awaitable<void> Relay::complete_forced() {
  if (streaming_ && !co_await send_header()) co_return;
  StreamChunk last;
  last.usage.prompt_tokens = prompt_tokens_;
  last.timing.queued = arrival_;
  last.timing.finished = Clock::now();
  co_await finish(FinishReason::kStop, last);
}

void Relay::cancel() {
  if (done || !rs_) return;
  service_.engine().abort(rs_->id());
  record_finished("abort", timing_);
  done = true;
  result.ok = false;
}

}  // namespace

net::awaitable<RouteResult> handle_generation(Stream& stream, ServerState& state, ModelService& service,
                                              const Request& req, const ResponseContext& ctx, bool chat,
                                              Clock::time_point arrival) {
  InFlight in_flight(state);
  PreparedGeneration prep;
  PrepareContext pctx{service.tokenizer(), service.served_name(), service.max_model_len(), service.default_effort(),
                      &service.replay(), service.next_seed()};
  pctx.limits = state.options.hardening.request;
  std::optional<ApiError> error;
  std::vector<std::string> ignored;
  if (chat) {
    ChatRequest cr;
    error = parse_chat_request(req.body(), cr);
    if (!error) error = prepare_chat(pctx, cr, prep);
    ignored = std::move(cr.gen.ignored_fields);
  } else {
    CompletionRequest cr;
    error = parse_completion_request(req.body(), cr);
    if (!error) error = prepare_completion(pctx, cr, prep);
    ignored = std::move(cr.gen.ignored_fields);
  }
  state.log_ignored_fields(ignored);
  if (!error) {
    prep.request.arrival_time = arrival;
    if (const std::string why = service.engine().check_request(prep.request); !why.empty())
      error = invalid_param("", why);
  }
  if (error) co_return RouteResult{error_reply(*error), false, true, static_cast<unsigned>(error->status)};
  prep.setup.id = request_id(chat ? "chatcmpl-" : "cmpl-", service);
  prep.setup.created = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
  if (state.options.hardening.log_prompts)  // --log-prompts only: prompts are private by default
    state.log("prompt of " + prep.setup.id + ": " + loggable(service.tokenizer().decode(prep.request.prompt_tokens), 4096));

  Relay relay(stream, state, service, ctx, prep, arrival);
  if (prep.complete_without_generation) {
    co_await relay.complete_forced();
    if (!relay.result.written) relay.result.status = relay.result.reply.status;
    co_return relay.result;
  }
  auto waker = std::make_shared<Waker>(co_await net::this_coro::executor);
  if (auto e = relay.submit(std::move(prep.request), waker))
    co_return RouteResult{error_reply(*e), false, true, 503};
  stream.expires_never();
  co_await (relay.pump() || relay.watch_client());
  relay.cancel();  // no-op when the generation finished
  if (!relay.result.written) relay.result.status = relay.result.reply.status;
  co_return relay.result;
}

}  // namespace ds4::http
