// libFuzzer target: raw request bytes through Boost.Beast's request parser with the server's
// header and body limits (as http/session.cpp reads a request, in pieces as reads deliver them,
// without sockets), then the server's per-request decisions on what was parsed: API key and CORS
// (http/auth.h), route by path, and for the JSON routes the body through parsing, validation and
// preparation (request_pipeline.h). Pipelined requests in one input are each handled in turn.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "fuzz/request_pipeline.h"
#include "http/auth.h"
#include "http/server_options.h"

namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using ds4::fuzz::Endpoint;

// What the server would do with one complete request (the session's routing table for the routes
// whose handling needs no engine).
void handle(const bhttp::request<bhttp::string_body>& req) {
  static const std::vector<std::string> keys = {"sk-fuzz-key"};
  static const std::vector<std::string> origins = {"https://app.example"};
  const auto key = ds4::http::presented_api_key(req[bhttp::field::authorization], req["x-api-key"]);
  (void)ds4::http::api_key_allowed(keys, key);
  (void)ds4::http::cors_allow_origin(origins, req[bhttp::field::origin]);
  const std::string_view target = req.target();
  const std::string_view path = target.substr(0, target.find('?'));
  if (req.method() != bhttp::verb::post) return;
  if (path == "/v1/chat/completions") ds4::fuzz::run_request(Endpoint::kChat, req.body());
  if (path == "/v1/completions") ds4::fuzz::run_request(Endpoint::kCompletions, req.body());
  if (path == "/tokenize") ds4::fuzz::run_request(Endpoint::kTokenize, req.body());
  if (path == "/detokenize") ds4::fuzz::run_request(Endpoint::kDetokenize, req.body());
}

// Parses requests from bytes fed `step` bytes at a time, like successive socket reads.
void parse_stream(std::string_view bytes, size_t step) {
  const ds4::http::HttpLimits limits;
  while (!bytes.empty()) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(limits.max_header_bytes);
    parser.body_limit(limits.max_body_bytes);
    parser.eager(true);
    beast::error_code ec;
    std::string pending;
    while (!parser.is_done() && !bytes.empty()) {
      const size_t n = std::min(step, bytes.size());
      pending.append(bytes.substr(0, n));
      bytes.remove_prefix(n);
      const size_t used = parser.put(boost::asio::buffer(pending), ec);
      pending.erase(0, used);
      if (ec == bhttp::error::need_more) ec = {};
      if (ec) return;  // the server answers 400/413/431 and closes the connection
    }
    if (!parser.is_done()) {
      parser.put_eof(ec);
      if (ec || !parser.is_done()) return;  // the peer went away mid-request
    }
    handle(parser.get());
    bytes = std::string_view(bytes.data() - pending.size(), bytes.size() + pending.size());  // unparsed tail
  }
}

}  // namespace

// Loads the tokenizer before fuzzing starts, so its load time never counts as a slow input.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)ds4::fuzz::shipped_tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = data[0] == 0 ? size : data[0];
  parse_stream(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), step);
  return 0;
}
