// Request limits and the log-safe text helper (see request_limits.h).
#include "http/request_limits.h"

#include <algorithm>
#include <cstdio>

namespace ds4::http {

namespace {

ApiError over_limit(const std::string& param, const std::string& what, size_t got, size_t limit) {
  ApiError e = invalid_param(param, "'" + param + "' holds " + std::to_string(got) + " " + what + "; this server " +
                                        "accepts at most " + std::to_string(limit));
  e.code = "limit_exceeded";
  return e;
}

}  // namespace

std::optional<ApiError> check_generation_limits(const RequestLimits& limits, const GenerationFields& g) {
  if (limits.max_tokens > 0 && g.max_tokens && *g.max_tokens > limits.max_tokens) {
    const std::string& name = g.max_tokens_name;
    ApiError e = invalid_param(name, "'" + name + "' is " + std::to_string(*g.max_tokens) +
                                         "; this server allows at most " + std::to_string(limits.max_tokens));
    e.code = "limit_exceeded";
    return e;
  }
  if (g.stop.size() > limits.max_stop) return over_limit(g.stop_name, "strings", g.stop.size(), limits.max_stop);
  for (size_t i = 0; i < g.stop.size(); ++i) {
    if (g.stop[i].size() <= limits.max_stop_bytes) continue;
    ApiError e = invalid_param(g.stop_name, "'" + g.stop_name + "[" + std::to_string(i) + "]' is " + std::to_string(g.stop[i].size()) +
                                           " bytes long; this server accepts at most " +
                                           std::to_string(limits.max_stop_bytes) + " bytes per stop string");
    e.code = "limit_exceeded";
    return e;
  }
  return std::nullopt;
}

std::optional<ApiError> check_chat_limits(const RequestLimits& limits, const ChatRequest& req) {
  if (req.messages.size() > limits.max_messages)
    return over_limit("messages", "messages", req.messages.size(), limits.max_messages);
  if (req.tools.size() > limits.max_tools) return over_limit("tools", "tools", req.tools.size(), limits.max_tools);
  return check_generation_limits(limits, req.gen);
}

std::string loggable(std::string_view text, size_t max_bytes) {
  std::string out;
  out.reserve(std::min(text.size(), max_bytes) + 4);
  for (const char c : text) {
    if (out.size() >= max_bytes) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f && u != '\\') {  // UTF-8 passes: logs of non-English prompts stay readable
      out += c;
    } else {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\x%02x", u);
      out += esc;
    }
  }
  return out;
}

}  // namespace ds4::http
