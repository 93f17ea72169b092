// SSE framing and OpenAI chunk reading (see sse.h). The chunk reader accepts both chat deltas
// ("delta": {content | reasoning | reasoning_content | tool_calls}) and completions ("text"), and
// treats a chunk with an empty or absent token field (the role-only first chunk) as no token.
#include "loadtest/sse.h"

namespace ds4::loadtest {

void SseParser::feed(std::string_view bytes, const OnEvent& on_event) {
  for (char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // second half of a \r\n split or not: already ended
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = (c == '\r');
    if (c == '\n' || c == '\r') {
      end_line(on_event);
    } else {
      line_.push_back(c);
    }
  }
}

void SseParser::finish(const OnEvent& on_event) {
  if (!line_.empty()) end_line(on_event);
  if (has_data_) on_event(data_);
  data_.clear();
  has_data_ = false;
}

void SseParser::end_line(const OnEvent& on_event) {
  if (line_.empty()) {  // blank line: dispatch the event
    if (has_data_) on_event(data_);
    data_.clear();
    has_data_ = false;
    return;
  }
  if (line_[0] != ':') {  // ':' starts a comment (keep-alive pings)
    size_t colon = line_.find(':');
    std::string_view field = std::string_view(line_).substr(0, colon);
    if (field == "data") {
      std::string_view value;
      if (colon != std::string::npos) {
        value = std::string_view(line_).substr(colon + 1);
        if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
      }
      if (has_data_) data_.push_back('\n');
      data_.append(value);
      has_data_ = true;
    }
    // Other fields (event, id, retry) carry nothing a load tester needs.
  }
  line_.clear();
}

namespace {

bool non_empty_string(simdjson::dom::object obj, const char* key) {
  std::string_view s;
  return obj[key].get_string().get(s) == simdjson::SUCCESS && !s.empty();
}

bool non_empty_array(simdjson::dom::object obj, const char* key) {
  simdjson::dom::array a;
  return obj[key].get_array().get(a) == simdjson::SUCCESS && a.size() > 0;
}

void read_usage(simdjson::dom::object root, StreamEvent* out) {
  simdjson::dom::object usage;
  if (root["usage"].get_object().get(usage) != simdjson::SUCCESS) return;
  int64_t v = 0;
  if (usage["prompt_tokens"].get_int64().get(v) == simdjson::SUCCESS) out->prompt_tokens = v;
  if (usage["completion_tokens"].get_int64().get(v) == simdjson::SUCCESS) out->completion_tokens = v;
}

void read_choice(simdjson::dom::object choice, StreamEvent* out) {
  std::string_view reason;
  if (choice["finish_reason"].get_string().get(reason) == simdjson::SUCCESS)
    out->finish_reason = std::string(reason);
  if (non_empty_string(choice, "text")) out->has_token = true;  // completions endpoint
  simdjson::dom::object delta;
  if (choice["delta"].get_object().get(delta) == simdjson::SUCCESS) {
    if (non_empty_string(delta, "content") || non_empty_string(delta, "reasoning") ||
        non_empty_string(delta, "reasoning_content") || non_empty_array(delta, "tool_calls"))
      out->has_token = true;
  }
}

}  // namespace

std::string parse_stream_event(simdjson::dom::parser& parser, std::string_view data, StreamEvent* out) {
  *out = StreamEvent{};
  std::string_view trimmed = data;
  while (!trimmed.empty() && (trimmed.back() == ' ' || trimmed.back() == '\t')) trimmed.remove_suffix(1);
  if (trimmed == "[DONE]") {
    out->done = true;
    return "";
  }
  simdjson::dom::element root;
  if (auto err = parser.parse(trimmed.data(), trimmed.size()).get(root); err)
    return std::string("stream event is not JSON (") + simdjson::error_message(err) + ")";
  simdjson::dom::object obj;
  if (root.get_object().get(obj) != simdjson::SUCCESS) return "stream event is not a JSON object";
  simdjson::dom::element error;
  if (obj["error"].get(error) == simdjson::SUCCESS && !error.is_null()) {
    out->is_error = true;
    std::string_view msg;
    if (error["message"].get_string().get(msg) == simdjson::SUCCESS) out->error_message = msg;
    else if (error.get_string().get(msg) == simdjson::SUCCESS) out->error_message = msg;
    else out->error_message = simdjson::minify(error);
    return "";
  }
  read_usage(obj, out);
  simdjson::dom::array choices;
  if (obj["choices"].get_array().get(choices) == simdjson::SUCCESS && choices.size() > 0) {
    out->has_choices = true;
    for (simdjson::dom::element c : choices) {
      simdjson::dom::object choice;
      if (c.get_object().get(choice) == simdjson::SUCCESS) read_choice(choice, out);
    }
  }
  return "";
}

}  // namespace ds4::loadtest
