// Internal interface between the connection loop (session.cpp), the plain routes (routes.cpp) and
// the generation routes (generation_route.cpp): the Beast/Asio types, a non-streaming Reply, and
// the per-request context a streamed response needs (CORS origin, keep-alive). Coroutines run on
// the connection's strand. Not used outside http/.
#pragma once
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <string>

#include "http/api_error.h"
#include "http/generation_api.h"
#include "http/server_state.h"

namespace ds4::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using Stream = beast::tcp_stream;
using Request = bhttp::request<bhttp::string_body>;
using Clock = std::chrono::steady_clock;

struct Reply {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  int retry_after_seconds = 0;  // > 0: Retry-After header
  bool close = false;           // close the connection after this reply
};

Reply json_reply(std::string body, unsigned status = 200);
Reply error_reply(const ApiError& error);

// Per-request facts the writers need.
struct ResponseContext {
  unsigned version = 11;        // HTTP/1.x of the request
  bool keep_alive = true;
  std::string cors_origin;      // Access-Control-Allow-Origin value ("" -> none)
  int write_timeout_seconds = 60;
};

// Writes a complete reply; false when the connection failed.
net::awaitable<bool> write_reply(Stream& stream, const ResponseContext& ctx, Reply reply);

// What a route did: either a reply for the session to write, or it streamed its own response.
struct RouteResult {
  Reply reply;
  bool written = false;   // the route wrote the response itself (SSE)
  bool ok = true;         // written: the connection is still usable
  unsigned status = 200;  // the status sent (for metrics)
};

// Plain routes (routes.cpp); need the service loaded.
Reply handle_models(ServerState& state, ModelService& service, const std::string& target);
Reply handle_tokenize(ServerState& state, ModelService& service, const Request& req);
Reply handle_detokenize(ServerState& state, ModelService& service, const Request& req);
// `preparing`: requests in the preparation pool (ds4serve_num_requests_preparing).
Reply handle_metrics(ModelService& service, int preparing);

// One client connection until it closes (session.cpp).
net::awaitable<void> run_session(tcp::socket socket, ServerState& state);

// /v1/chat/completions, /v1/completions, /v1/messages, /v1/responses (generation_route.cpp).
net::awaitable<RouteResult> handle_generation(Stream& stream, ServerState& state, ModelService& service,
                                              const Request& req, const ResponseContext& ctx, GenerationApi api,
                                              Clock::time_point arrival);

}  // namespace ds4::http
