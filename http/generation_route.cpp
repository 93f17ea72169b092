// The generation routes (/v1/chat/completions, /v1/completions, /v1/messages, /v1/responses): parse
// -> prepare (api_dispatch.h; on the preparation pool, prepare_pool.h) -> submit to the engine ->
// relay the request's token stream through the API's ResponseWriter as SSE or one JSON body. A finished turn is remembered for exact replay (its
// DSML by tool call ids, its sampled ids by their text), so a resent history hits the prefix cache.
// The engine's edge-triggered notify posts onto the connection's strand and wakes the relay's
// timer, so no io thread ever blocks on the engine. A watcher waits for the client to close its
// side; whichever ends first cancels the other, and the request is aborted in the engine (its KV
// freed at the next step) unless it already finished.
#include <boost/asio/experimental/awaitable_operators.hpp>

#include <sys/socket.h>

#include <cerrno>
#include <cstdio>

#include "engine/prompt_tokens.h"
#include "http/api_dispatch.h"
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
        std::unique_ptr<ResponseWriter> writer, Clock::time_point arrival)
      : stream_(stream), state_(state), service_(service), ctx_(ctx), arrival_(arrival), writer_(std::move(writer)),
        streaming_(prep.setup.stream), prompt_tokens_(static_cast<int64_t>(prep.request.prompt_tokens.size())),
        max_tokens_(prep.request.max_tokens), turn_ids_(prep.forced_tokens) {
    writer_->add_forced(prep.forced_tokens);
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

  // A reasoning budget (Anthropic thinking.budget_tokens): the request first samples at most
  // `budget` tokens; if the reasoning is still open then, a continuation closes it with </think>
  // and samples the rest of max_tokens (its prompt is this turn so far: the prefix cache covers
  // all but the last partial block). Call before submit; `request` is the one to submit.
  void plan_reasoning_budget(GenerationRequest& request, int64_t budget);

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
  void remember_turn(FinishReason reason);
  // The first request reached the reasoning budget: submits the continuation (see above).
  net::awaitable<void> close_reasoning(StreamChunk& chunk);

  Stream& stream_;
  ServerState& state_;
  ModelService& service_;
  const ResponseContext& ctx_;
  Clock::time_point arrival_;
  std::unique_ptr<ResponseWriter> writer_;
  bool streaming_;
  int64_t prompt_tokens_, max_tokens_;
  std::shared_ptr<Waker> waker_;
  std::shared_ptr<RequestStream> rs_;
  bool header_sent_ = false;
  bool first_token_seen_ = false;
  Clock::time_point last_token_time_{};
  RequestTiming timing_;
  std::vector<double> gaps_;
  std::vector<int32_t> turn_ids_;  // the forced tail and every sampled id, for exact replay
  std::optional<GenerationRequest> continuation_;  // reasoning budget: the whole request
  std::optional<int64_t> cached_prompt_tokens_;     // of the first admission (usage reports it)
};

void Relay::plan_reasoning_budget(GenerationRequest& request, int64_t budget) {
  if (budget <= 0 || budget >= request.max_tokens || !writer_->in_reasoning()) return;
  continuation_ = request;
  request.max_tokens = budget;
}

net::awaitable<void> Relay::close_reasoning(StreamChunk& chunk) {
  GenerationRequest next = std::move(*continuation_);
  continuation_.reset();
  const int32_t close = service_.tokenizer().chat_ids().think_end;
  next.prompt_tokens.insert(next.prompt_tokens.end(), turn_ids_.begin(), turn_ids_.end());
  next.prompt_tokens.push_back(close);
  next.max_tokens -= writer_->completion_tokens() + 1;  // </think> takes a position of the output too
  std::string sse;
  writer_->add_tokens(std::span<const int32_t>(&close, 1), {}, chunk.usage, sse);
  turn_ids_.push_back(close);
  if (streaming_ && !co_await write_chunk(sse)) co_return;
  if (next.max_tokens < 1) {
    co_await finish(FinishReason::kLength, chunk);
    co_return;
  }
  rs_ = service_.engine().submit(std::move(next), waker_->notify());
}

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
  if (ec) co_return false;
  co_return co_await write_chunk(writer_->stream_start());
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
  f.generation_tokens = writer_->completion_tokens();
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
    if (!streaming_) {
      result.reply = error_reply(e);
      result.reply.body = writer_->error_body(e);
    } else if (co_await write_chunk(writer_->stream_error(e))) {
      auto [ec, n] = co_await net::async_write(stream_, bhttp::make_chunk_last(), kAwaitable);
      if (ec) result.ok = false;
    }
    co_return;
  }
  RequestUsage usage = last.usage;
  if (cached_prompt_tokens_) usage.cached_prompt_tokens = *cached_prompt_tokens_;
  std::string out = writer_->finish(reason, usage);
  record_finished(writer_->finish_reason(), last.timing);
  remember_turn(reason);
  if (streaming_) {
    if (co_await write_chunk(out)) {
      auto [ec, n] = co_await net::async_write(stream_, bhttp::make_chunk_last(), kAwaitable);
      if (ec) result.ok = false;
    }
  } else {
    result.reply = json_reply(std::move(out));
  }
}

// So that a resent history renders to the tokens computed now: the exact DSML of the calls (by
// their ids) and the sampled ids of the whole turn (by their text). A turn cut by a stop string is
// not what the client sees, so it is not remembered.
void Relay::remember_turn(FinishReason reason) {
  const AssistantMessage& m = writer_->message();
  if (!m.tool_calls.empty() && !m.raw_dsml.empty()) {
    std::vector<std::string> ids;
    for (const ToolCall& c : m.tool_calls) ids.push_back(c.id);
    service_.replay().remember(ids, m.raw_dsml);
  }
  if (writer_->stopped() || (reason != FinishReason::kStop && reason != FinishReason::kLength)) return;
  std::string text;
  if (generated_turn_entry(service_.tokenizer(), turn_ids_, text))
    service_.replay().remember_turn(std::move(text), std::move(turn_ids_));
}

net::awaitable<void> Relay::on_chunk(StreamChunk& chunk) {
  timing_ = chunk.timing;
  if (!cached_prompt_tokens_ && (!chunk.tokens.empty() || chunk.finished()))
    cached_prompt_tokens_ = chunk.usage.cached_prompt_tokens;
  // The token that ended the request (EOS or a stop id) is counted but shows no text.
  std::span<const int32_t> tokens(chunk.tokens);
  record_tokens(chunk);
  turn_ids_.insert(turn_ids_.end(), chunk.tokens.begin(), chunk.tokens.end());
  std::string sse;
  writer_->add_tokens(tokens, chunk.logprobs, chunk.usage, sse);
  if (streaming_ && !co_await write_chunk(sse)) co_return;
  if (writer_->stopped()) {  // a stop string matched: the text side ends the request
    service_.engine().abort(rs_->id());
    chunk.timing.finished = Clock::now();
    co_await finish(FinishReason::kStop, chunk);
    co_return;
  }
  if (chunk.finished() && chunk.finish_reason == FinishReason::kLength && continuation_ && writer_->in_reasoning()) {
    co_await close_reasoning(chunk);
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
    if (!ec && streaming_ && !writer_->first_text_sent())  // still prefilling: keep the connection alive
      if (!co_await write_chunk(writer_->heartbeat())) co_return;
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

namespace {

// What the preparation pool hands back to the connection's strand.
struct PreparedOnPool {
  ApiPrepared prepared;
  std::optional<ApiError> error;
};

// Parse, render, tokenize and check one request (runs on the preparation pool: prepare_pool.h).
// Touches only thread-safe state: the tokenizer (const), the replay cache, the seed counter, the
// engine's request check (const) and the log.
PreparedOnPool prepare_generation(ServerState& state, ModelService& service, const Request& req, GenerationApi api,
                                  Clock::time_point arrival) {
  PreparedOnPool out;
  PreparedGeneration& prep = out.prepared.prep;
  PrepareContext pctx{service.tokenizer(), service.served_name(), service.max_model_len(), service.default_effort(),
                      &service.replay(), service.next_seed()};
  pctx.limits = state.options.hardening.request;
  std::vector<std::string> ignored;
  out.error = prepare_for_api(api, req.body(), pctx, out.prepared, ignored);
  state.log_ignored_fields(ignored);
  if (!out.error) {
    prep.request.arrival_time = arrival;
    if (const std::string why = service.engine().check_request(prep.request); !why.empty())
      out.error = invalid_param("", why);
  }
  if (out.error) return out;
  prep.setup.id = request_id(response_id_prefix(api), service);
  prep.setup.created = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
  if (state.options.hardening.log_prompts)  // --log-prompts only: prompts are private by default
    state.log("prompt of " + prep.setup.id + ": " + loggable(service.tokenizer().decode(prep.request.prompt_tokens), 4096));
  return out;
}

}  // namespace

net::awaitable<RouteResult> handle_generation(Stream& stream, ServerState& state, ModelService& service,
                                              const Request& req, const ResponseContext& ctx, GenerationApi api,
                                              Clock::time_point arrival) {
  InFlight in_flight(state);
  // Off the io thread (a prompt of tens of MiB takes seconds to tokenize); back on this
  // connection's strand afterwards. The client may leave meanwhile: the request is then submitted
  // and at once aborted by watch_client below, as a client leaving during prefill is.
  std::optional<PreparedOnPool> done = co_await state.prepare_pool.run(
      [&state, &service, &req, api, arrival] { return prepare_generation(state, service, req, api, arrival); });
  if (!done) co_return RouteResult{api_error_reply(api, state.prepare_pool.overloaded_error()), false, true, 503};
  if (done->error)
    co_return RouteResult{api_error_reply(api, *done->error), false, true, static_cast<unsigned>(done->error->status)};
  ApiPrepared& prepared = done->prepared;
  PreparedGeneration& prep = prepared.prep;

  Relay relay(stream, state, service, ctx, prep, make_api_writer(api, service.tokenizer(), prepared), arrival);
  if (prep.complete_without_generation) {
    co_await relay.complete_forced();
    if (!relay.result.written) relay.result.status = relay.result.reply.status;
    co_return relay.result;
  }
  auto waker = std::make_shared<Waker>(co_await net::this_coro::executor);
  relay.plan_reasoning_budget(prep.request, prepared.reasoning_budget);
  if (auto e = relay.submit(std::move(prep.request), waker))
    co_return RouteResult{api_error_reply(api, *e), false, true, 503};
  stream.expires_never();
  co_await (relay.pump() || relay.watch_client());
  relay.cancel();  // no-op when the generation finished
  if (!relay.result.written) relay.result.status = relay.result.reply.status;
  co_return relay.result;
}

}  // namespace ds4::http
