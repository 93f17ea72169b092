// One client connection: HTTP/1.1 keep-alive loop with header / body limits and timeouts
// (Expect: 100-continue honoured), CORS, API-key check, routing, and the reply write. Runs as a
// coroutine on its own strand (spawned by http_server.cpp); replies that need tokenizing
// (/tokenize, /detokenize, count_tokens) are computed on the preparation pool (prepare_pool.h).
// Every request is counted in ds4serve_http_requests_total by route and status once the model
// service exists.
#include <cstdio>
#include <functional>

#include "http/api_dispatch.h"
#include "http/auth.h"
#include "http/request_limits.h"
#include "http/session.h"

namespace ds4::http {

namespace {

constexpr auto kAwaitable = net::as_tuple(net::use_awaitable);

// Fixed route names for metrics (unknown paths are "other": bounded label values).
const char* route_name(std::string_view path) {
  for (const char* r : {"/health", "/metrics", "/tokenize", "/detokenize", "/v1/chat/completions", "/v1/completions",
                        "/v1/messages", "/v1/messages/count_tokens", "/v1/responses"})
    if (path == r) return r;
  if (path == "/v1/models" || path.rfind("/v1/models/", 0) == 0) return "/v1/models";
  return "other";
}

// /health and /metrics as --health-access / --metrics-access say (hardening_options.h).
bool needs_auth(const ServerState& state, std::string_view path) {
  const HardeningOptions& h = state.options.hardening;
  if (path == "/health") return h.health_access == EndpointAccess::kKey;
  if (path == "/metrics") return h.metrics_access == EndpointAccess::kKey;
  return path.rfind("/v1/", 0) == 0 || path == "/tokenize" || path == "/detokenize";
}

Reply health_reply(ServerState& state) {
  if (state.draining) return error_reply(unavailable("The server is shutting down", "shutting_down", 5));
  ModelService* service = state.service.load();
  if (!service) return error_reply(unavailable("The model is loading", "model_loading", 5));
  if (const std::string failed = service->engine().fatal_error(); !failed.empty())
    return error_reply(unavailable(failed, "engine_failed", 30));
  return json_reply("{\"status\":\"ok\"}");
}

Reply preflight_reply() {
  Reply r;
  r.status = 204;
  r.content_type.clear();
  return r;
}

struct Routed {
  Reply reply;
  bool generation = false;
  GenerationApi api = GenerationApi::kChatCompletions;
  std::function<Reply()> prepare;  // CPU-heavy reply (tokenizing): computed on the preparation pool
};

Routed on_pool(std::function<Reply()> prepare) {
  Routed r;
  r.prepare = std::move(prepare);
  return r;
}

// Decides everything that does not need the connection: errors, plain routes, or "generation".
Routed route(ServerState& state, const Request& req, std::string_view path) {
  const bool get = req.method() == bhttp::verb::get, post = req.method() == bhttp::verb::post;
  const std::string method(req.method_string()), target(path);
  if (req.method() == bhttp::verb::options) return {preflight_reply()};
  if (path == "/metrics" && state.options.hardening.metrics_access == EndpointAccess::kOff)
    return {error_reply(route_not_found(method, target))};
  if (needs_auth(state, path)) {
    const auto key = presented_api_key(req[bhttp::field::authorization], req["x-api-key"]);
    if (!api_key_allowed(state.options.api_keys, key))
      return {error_reply(unauthorized(key ? "Incorrect API key provided" : "Missing API key: send 'Authorization: Bearer <key>'"))};
  }
  const char* name = route_name(path);
  const std::string_view r = name;
  const bool known = r != "other";
  if (!known) return {error_reply(route_not_found(method, target))};
  const bool want_post = r != "/health" && r != "/metrics" && r != "/v1/models";
  if ((want_post && !post) || (!want_post && !get)) return {error_reply(method_not_allowed(method, target))};
  if (r == "/health") return {health_reply(state)};
  ModelService* service = state.service.load();
  if (!service) return {error_reply(unavailable("The model is loading", "model_loading", 5))};
  if (r == "/metrics") return {handle_metrics(*service, state.prepare_pool.outstanding())};
  if (r == "/v1/models") return {handle_models(state, *service, target)};
  if (r == "/tokenize") return on_pool([&state, service, &req] { return handle_tokenize(state, *service, req); });
  if (r == "/detokenize") return on_pool([&state, service, &req] { return handle_detokenize(state, *service, req); });
  if (r == "/v1/messages/count_tokens") return on_pool([service, &req] { return handle_count_tokens(*service, req); });
  if (state.draining) return {error_reply(unavailable("The server is shutting down", "shutting_down", 5))};
  return {Reply{}, true, *generation_api_of(r)};
}

// A reply that refuses the request and closes the connection.
Reply refusal(ApiError e) {
  Reply r = error_reply(e);
  r.close = true;
  return r;
}

ApiError malformed(const std::string& why, int status = 400, std::string code = "malformed_request") {
  ApiError e = invalid_json("Malformed HTTP request: " + why);
  e.status = status;
  e.code = std::move(code);
  return e;
}

// Waits up to timeout_seconds for the first byte of the next request; false when the peer closed
// or timed out.
net::awaitable<bool> wait_for_request_start(Stream& stream, beast::flat_buffer& buffer, int timeout_seconds) {
  if (buffer.size() > 0) co_return true;  // a pipelined request is already here
  stream.expires_after(std::chrono::seconds(timeout_seconds));
  auto [ec, n] = co_await stream.async_read_some(buffer.prepare(16 * 1024), kAwaitable);
  buffer.commit(n);
  co_return !ec && n > 0;
}

// The request's Transfer-Encoding, when the body framing is one this server does not read: only
// chunked (as the last coding) is; anything else could be misread as the next request.
std::optional<ApiError> unsupported_transfer_encoding(const bhttp::request_parser<bhttp::string_body>& parser) {
  const std::string_view te = parser.get()[bhttp::field::transfer_encoding];
  if (te.empty() || parser.chunked()) return std::nullopt;
  return malformed("Transfer-Encoding '" + loggable(te, 64) + "' is not supported (only chunked)", 501,
                   "unsupported_transfer_encoding");
}

// Reads one request: the first byte within wait_seconds, then the header within the header
// timeout (a slow-loris client trickling its header is cut off), then the body within the read
// timeout. Returns the reply to send instead when the request is malformed or too large (then the
// connection closes), or nullopt with `closed` set when the peer went away.
net::awaitable<std::optional<Reply>> read_request(Stream& stream, beast::flat_buffer& buffer, ServerState& state,
                                                  Request& out, bool& closed, int wait_seconds) {
  const HttpLimits& l = state.options.limits;
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(l.max_header_bytes);
  parser.body_limit(l.max_body_bytes);
  closed = !co_await wait_for_request_start(stream, buffer, wait_seconds);
  if (closed) co_return std::nullopt;
  stream.expires_after(std::chrono::seconds(state.options.hardening.header_timeout_seconds));
  auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, parser, kAwaitable);
  if (ec == bhttp::error::header_limit)
    co_return refusal(malformed("headers exceed " + std::to_string(l.max_header_bytes) + " bytes", 431,
                                "headers_too_large"));
  if (!ec)
    if (auto e = unsupported_transfer_encoding(parser)) co_return refusal(*e);
  if (!ec && parser.get()[bhttp::field::expect] == "100-continue") {
    bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, parser.get().version()};
    stream.expires_after(std::chrono::seconds(l.write_timeout_seconds));
    auto [wec, wn] = co_await bhttp::async_write(stream, cont, kAwaitable);
    ec = wec;
  }
  if (!ec) {
    stream.expires_after(std::chrono::seconds(l.read_timeout_seconds));
    auto [bec, bn] = co_await bhttp::async_read(stream, buffer, parser, kAwaitable);
    ec = bec;
  }
  if (ec == bhttp::error::body_limit) co_return refusal(body_too_large(l.max_body_bytes));
  if (ec) {
    closed = ec == bhttp::error::end_of_stream || ec == beast::error::timeout || ec == net::error::connection_reset ||
             ec == net::error::eof;
    if (closed) co_return std::nullopt;
    co_return refusal(malformed(ec.message()));
  }
  out = parser.release();
  co_return std::nullopt;
}

// The reply of a Routed::prepare, computed on the preparation pool (503 when it is full); the
// session resumes on its strand.
net::awaitable<Reply> reply_from_pool(ServerState& state, std::function<Reply()> prepare) {
  std::optional<Reply> reply = co_await state.prepare_pool.run(std::move(prepare));
  if (!reply) co_return error_reply(state.prepare_pool.overloaded_error());
  co_return std::move(*reply);
}

ResponseContext context_for(ServerState& state, const Request& req) {
  ResponseContext ctx;
  ctx.version = req.version();
  ctx.keep_alive = req.keep_alive() && !state.draining;
  ctx.cors_origin = cors_allow_origin(state.options.cors_origins, req[bhttp::field::origin]);
  ctx.write_timeout_seconds = state.options.limits.write_timeout_seconds;
  return ctx;
}

void record(ServerState& state, const Request& req, std::string_view path, unsigned status, Clock::time_point start) {
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  if (ModelService* service = state.service.load()) service->metrics().record_http(route_name(path), int(status), s);
  char line[64];
  std::snprintf(line, sizeof line, " %u %.1f ms", status, s * 1e3);
  state.log(std::string(req.method_string()) + " " + loggable(path, 200) + line);
}

// After refusing a request whose body is still arriving (413, 431, malformed): close our side and
// read and discard what the client still sends for a while, so that it finishes writing and then
// reads the reply instead of failing with a broken pipe (a "lingering close").
net::awaitable<void> lingering_close(Stream& stream) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.expires_after(std::chrono::seconds(5));
  std::vector<char> sink(64 * 1024);
  size_t total = 0;
  while (total < (size_t{256} << 20)) {
    auto [rec, n] = co_await stream.async_read_some(net::buffer(sink), kAwaitable);
    if (rec) break;
    total += n;
  }
}

}  // namespace

net::awaitable<bool> write_reply(Stream& stream, const ResponseContext& ctx, Reply reply) {
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(reply.status), ctx.version};
  if (!reply.content_type.empty()) res.set(bhttp::field::content_type, reply.content_type);
  if (reply.retry_after_seconds > 0) res.set(bhttp::field::retry_after, std::to_string(reply.retry_after_seconds));
  if (!ctx.cors_origin.empty()) {
    res.set(bhttp::field::access_control_allow_origin, ctx.cors_origin);
    res.set(bhttp::field::vary, "Origin");
    if (reply.status == 204) {
      res.set(bhttp::field::access_control_allow_methods, "GET, POST, OPTIONS");
      res.set(bhttp::field::access_control_allow_headers, "Authorization, Content-Type, X-Api-Key");
      res.set(bhttp::field::access_control_max_age, "600");
    }
  }
  res.keep_alive(ctx.keep_alive && !reply.close);
  res.body() = std::move(reply.body);
  res.prepare_payload();
  stream.expires_after(std::chrono::seconds(ctx.write_timeout_seconds));
  auto [ec, n] = co_await bhttp::async_write(stream, res, kAwaitable);
  co_return !ec;
}

net::awaitable<void> run_session(tcp::socket socket, ServerState& state) {
  Stream stream(std::move(socket));
  beast::flat_buffer buffer;
  // A new connection must start its first request within the header timeout (a client that opens
  // sockets and stays silent cannot hold connection slots); a kept-alive one may idle longer.
  int wait_seconds = state.options.hardening.header_timeout_seconds;
  for (;;) {
    Request req;
    bool closed = false;
    std::optional<Reply> early = co_await read_request(stream, buffer, state, req, closed, wait_seconds);
    wait_seconds = state.options.limits.idle_timeout_seconds;
    if (closed) break;
    const auto start = Clock::now();
    if (early) {
      ResponseContext ctx;
      ctx.keep_alive = false;
      if (co_await write_reply(stream, ctx, std::move(*early))) co_await lingering_close(stream);
      break;
    }
    const std::string_view target = req.target();
    const std::string path(target.substr(0, target.find('?')));
    ResponseContext ctx = context_for(state, req);
    Routed routed = route(state, req, path);
    if (routed.prepare) routed.reply = co_await reply_from_pool(state, std::move(routed.prepare));
    if (!routed.generation) routed.reply = reshape_error_for_path(path, std::move(routed.reply));
    RouteResult result;
    if (routed.generation) {
      result = co_await handle_generation(stream, state, *state.service.load(), req, ctx, routed.api, start);
    } else {
      result.reply = std::move(routed.reply);
      result.status = result.reply.status;
    }
    if (!result.written && result.ok) result.ok = co_await write_reply(stream, ctx, std::move(result.reply));
    record(state, req, path, result.status, start);
    if (!result.ok || !ctx.keep_alive || result.reply.close) break;
  }
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace ds4::http
