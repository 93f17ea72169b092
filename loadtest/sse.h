// Server-sent events: an incremental parser for the byte stream and the reader of one OpenAI
// streaming chunk. Comment lines (':' pings) are skipped; \n, \r\n and \r all end a line, also when
// split across reads. Used by StreamingRequest (http_client.cpp); tested in loadtest_sse_test.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <simdjson.h>

namespace ds4::loadtest {

class SseParser {
 public:
  using OnEvent = std::function<void(std::string_view data)>;
  // Consumes bytes; calls on_event with the data of every event completed by them (multi-line data
  // joined by '\n', one leading space after "data:" dropped). Events without data are not reported.
  void feed(std::string_view bytes, const OnEvent& on_event);
  // The body ended: a last event not closed by a blank line is still delivered.
  void finish(const OnEvent& on_event);
  // Bytes of an unfinished line (a caller can bound memory with this).
  size_t pending_bytes() const { return line_.size() + data_.size(); }

 private:
  void end_line(const OnEvent& on_event);
  std::string line_;   // the current, incomplete line
  std::string data_;   // data lines of the current event
  bool has_data_ = false;
  bool last_was_cr_ = false;  // a '\r' ended the previous line; a following '\n' belongs to it
};

// What one SSE data payload of a chat or completions stream says.
struct StreamEvent {
  bool done = false;         // the "[DONE]" sentinel
  bool has_choices = false;  // a non-empty "choices" array (the role-only first chunk has one)
  bool has_token = false;    // non-empty content, reasoning, reasoning_content, text or tool_calls
  std::string finish_reason;
  int64_t prompt_tokens = -1, completion_tokens = -1;  // from "usage" when present
  bool is_error = false;     // {"error": ...} in the stream
  std::string error_message;
};

// Reads one data payload. Returns "" or a description of why it is not a valid chunk.
std::string parse_stream_event(simdjson::dom::parser& parser, std::string_view data, StreamEvent* out);

}  // namespace ds4::loadtest
