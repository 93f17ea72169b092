// AnthropicWriter and Anthropic's error shape (see anthropic_response.h).
#include "http/anthropic_response.h"

#include <cstdio>

#include "http/json_writer.h"

namespace ds4::http {

namespace {

void append_event(std::string& out, std::string_view type, const std::string& json) {
  out.append("event: ").append(type).append("\ndata: ").append(json).append("\n\n");
}

// A stable opaque signature for a thinking block (clients send it back unchanged; nothing checks it).
std::string signature_of(const std::string& thinking) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : thinking) h = (h ^ c) * 1099511628211ull;
  char hex[24];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return std::string("ds4-") + hex;
}

const char* stop_reason_name(TurnEnd end) {
  switch (end) {
    case TurnEnd::kToolUse: return "tool_use";
    case TurnEnd::kStopSequence: return "stop_sequence";
    case TurnEnd::kMaxTokens: return "max_tokens";
    case TurnEnd::kEndTurn:
    case TurnEnd::kAborted: break;
  }
  return "end_turn";
}

class AnthropicWriter final : public BlockWriter {
 public:
  using BlockWriter::BlockWriter;

  std::string error_body(const ApiError& error) const override { return anthropic_error_body(error); }

  std::string stream_error(const ApiError& error) override {
    std::string out;
    append_event(out, "error", anthropic_error_body(error));
    return out;
  }

 protected:
  void on_start(const RequestUsage& usage, std::string& out) override {
    JsonWriter w;
    w.begin_object().field("type", "message_start").key("message");
    write_message_head(w);
    w.key("content").begin_array().end_array();
    w.key("stop_reason").null().key("stop_sequence").null();
    write_usage(w, usage, 0);
    w.end_object().end_object();
    append_event(out, "message_start", w.str());
  }

  void on_open(size_t index, std::string& out) override {
    const OutputBlock& b = blocks()[index];
    JsonWriter w;
    w.begin_object().field("type", "content_block_start").field("index", static_cast<int64_t>(index));
    w.key("content_block").begin_object();
    if (b.kind == BlockKind::kReasoning) w.field("type", "thinking").field("thinking", "").field("signature", "");
    else if (b.kind == BlockKind::kText) w.field("type", "text").field("text", "");
    else w.field("type", "tool_use").field("id", b.call_id).field("name", b.name).key("input").begin_object().end_object();
    w.end_object().end_object();
    append_event(out, "content_block_start", w.str());
  }

  void on_delta(size_t index, std::string_view delta, std::string& out) override {
    const OutputBlock& b = blocks()[index];
    if (b.kind == BlockKind::kReasoning) write_delta(index, "thinking_delta", "thinking", delta, out);
    else if (b.kind == BlockKind::kText) write_delta(index, "text_delta", "text", delta, out);
    else write_delta(index, "input_json_delta", "partial_json", delta, out);
  }

  void on_close(size_t index, std::string& out) override {
    const OutputBlock& b = blocks()[index];
    if (b.kind == BlockKind::kReasoning) write_delta(index, "signature_delta", "signature", signature_of(b.text), out);
    JsonWriter w;
    w.begin_object().field("type", "content_block_stop").field("index", static_cast<int64_t>(index)).end_object();
    append_event(out, "content_block_stop", w.str());
  }

  std::string end_stream(const RequestUsage& usage) override {
    std::string out;
    JsonWriter w;
    w.begin_object().field("type", "message_delta").key("delta").begin_object();
    write_stop(w);
    w.end_object();
    write_usage(w, usage, completion_tokens());
    w.end_object();
    append_event(out, "message_delta", w.str());
    append_event(out, "message_stop", "{\"type\":\"message_stop\"}");
    return out;
  }

  std::string body(const RequestUsage& usage) override {
    JsonWriter w;
    write_message_head(w);
    w.key("content").begin_array();
    for (const OutputBlock& b : blocks()) write_block(w, b);
    w.end_array();
    write_stop(w);
    write_usage(w, usage, completion_tokens());
    w.end_object();
    return w.take();
  }

 private:
  // Opens the message object and writes id, type, role, model.
  void write_message_head(JsonWriter& w) const {
    w.begin_object().field("id", setup().id).field("type", "message").field("role", "assistant");
    w.field("model", setup().model);
  }

  void write_block(JsonWriter& w, const OutputBlock& b) const {
    if (b.kind == BlockKind::kToolCall && !b.complete) return;  // its text came as content
    w.begin_object();
    if (b.kind == BlockKind::kReasoning) {
      w.field("type", "thinking").field("thinking", b.text).field("signature", signature_of(b.text));
    } else if (b.kind == BlockKind::kText) {
      w.field("type", "text").field("text", b.text);
    } else {
      w.field("type", "tool_use").field("id", b.call_id).field("name", b.name);
      w.key("input").raw(arguments_object(b.text));
    }
    w.end_object();
  }

  void write_stop(JsonWriter& w) const {
    w.field("stop_reason", stop_reason_name(turn_end()));
    w.field_or_null("stop_sequence", turn_end() == TurnEnd::kStopSequence ? matched_stop() : "");
  }

  void write_usage(JsonWriter& w, const RequestUsage& usage, int64_t output_tokens) const {
    const int64_t cached = std::min(usage.cached_prompt_tokens, setup().prompt_tokens);
    w.key("usage").begin_object();
    w.field("input_tokens", setup().prompt_tokens - cached).field("cache_creation_input_tokens", int64_t{0});
    w.field("cache_read_input_tokens", cached).field("output_tokens", output_tokens);
    w.end_object();
  }

  static void write_delta(size_t index, const char* type, const char* key, std::string_view text, std::string& out) {
    JsonWriter w;
    w.begin_object().field("type", "content_block_delta").field("index", static_cast<int64_t>(index));
    w.key("delta").begin_object().field("type", type).field(key, text).end_object().end_object();
    append_event(out, "content_block_delta", w.str());
  }
};

}  // namespace

const char* anthropic_error_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503:
    case 529: return "overloaded_error";
    default: break;
  }
  return status >= 500 ? "api_error" : "invalid_request_error";
}

std::string anthropic_error_body(const ApiError& error) {
  JsonWriter w;
  w.begin_object().field("type", "error").key("error").begin_object();
  w.field("type", anthropic_error_type(error.status)).field("message", error.message);
  w.end_object().end_object();
  return w.take();
}

std::unique_ptr<ResponseWriter> make_anthropic_writer(const Tokenizer& tokenizer, ResponseSetup setup,
                                                      AssistantStreamOptions options) {
  return std::make_unique<AnthropicWriter>(tokenizer, std::move(setup), std::move(options));
}

}  // namespace ds4::http
