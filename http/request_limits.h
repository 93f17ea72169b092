// Per-request limits a shared server enforces before any work is queued (flags --max-tokens,
// --max-stop, --max-stop-bytes, --max-tools, --max-messages), checked on the parsed request so that
// every API that turns its body into ChatRequest / GenerationFields gets the same 400s, each naming
// the parameter and the limit. n (choices per request) is fixed at 1 by the parser: this server
// returns one choice per request. Called by generation_prepare.cpp; tested by
// tests/unit/http_limits_test.cpp and tests/python/test_http_bad_*.py.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "http/api_error.h"
#include "http/openai_request.h"

namespace ds4::http {

struct RequestLimits {
  int64_t max_tokens = 0;        // most completion tokens one request may ask for (0: the context)
  size_t max_stop = 64;          // stop strings per request
  size_t max_stop_bytes = 1024;  // bytes of one stop string
  size_t max_tools = 256;        // tool definitions per request
  size_t max_messages = 4096;    // chat messages per request
};

// The first limit the fields break, or nullopt.
std::optional<ApiError> check_generation_limits(const RequestLimits& limits, const GenerationFields& g);
// The generation fields plus the message and tool counts.
std::optional<ApiError> check_chat_limits(const RequestLimits& limits, const ChatRequest& req);

// The text as a log line may show it: control bytes (newlines included), DEL and backslash escaped
// as \xNN, cut to max_bytes (then "..." is appended), so a client cannot forge log lines or flood
// the log. Bytes >= 0x80 pass unchanged.
std::string loggable(std::string_view text, size_t max_bytes);

}  // namespace ds4::http
