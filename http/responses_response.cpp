// ResponsesWriter (see responses_response.h).
#include "http/responses_response.h"

#include "http/base64.h"
#include "http/json_writer.h"

namespace ds4::http {

namespace {

class ResponsesWriter final : public BlockWriter {
 public:
  ResponsesWriter(const Tokenizer& tokenizer, ResponseSetup setup, AssistantStreamOptions options, ResponsesEcho echo)
      : BlockWriter(tokenizer, std::move(setup), std::move(options)), echo_(std::move(echo)) {}

  std::string stream_start() override {
    std::string out;
    if (!setup().stream) return out;
    emit(out, "response.created", [&](JsonWriter& w) { write_response(w.key("response"), "in_progress", nullptr); });
    emit(out, "response.in_progress", [&](JsonWriter& w) { write_response(w.key("response"), "in_progress", nullptr); });
    return out;
  }

  std::string stream_error(const ApiError& error) override {
    failure_ = error.message;
    std::string out;
    emit(out, "response.failed", [&](JsonWriter& w) { write_response(w.key("response"), "failed", nullptr); });
    return out;
  }

 protected:
  void on_start(const RequestUsage&, std::string&) override {}

  void on_open(size_t index, std::string& out) override {
    const OutputBlock& b = blocks()[index];
    emit(out, "response.output_item.added", [&](JsonWriter& w) {
      w.field("output_index", static_cast<int64_t>(index)).key("item");
      write_item(w, index, false);
    });
    if (b.kind == BlockKind::kToolCall) return;
    emit(out, "response.content_part.added", [&](JsonWriter& w) {
      part_head(w, index).key("part");
      write_part(w, b, "");
    });
  }

  void on_delta(size_t index, std::string_view delta, std::string& out) override {
    const OutputBlock& b = blocks()[index];
    const char* type = b.kind == BlockKind::kReasoning ? "response.reasoning_text.delta"
                       : b.kind == BlockKind::kText    ? "response.output_text.delta"
                                                       : "response.function_call_arguments.delta";
    emit(out, type, [&](JsonWriter& w) {
      if (b.kind == BlockKind::kToolCall) w.field("item_id", item_id(index)).field("output_index", static_cast<int64_t>(index));
      else part_head(w, index);
      w.field("delta", delta);
      if (b.kind == BlockKind::kText) w.key("logprobs").begin_array().end_array();
    });
  }

  void on_close(size_t index, std::string& out) override {
    const OutputBlock& b = blocks()[index];
    if (b.kind == BlockKind::kToolCall) {
      emit(out, "response.function_call_arguments.done", [&](JsonWriter& w) {
        w.field("item_id", item_id(index)).field("output_index", static_cast<int64_t>(index));
        w.field("name", b.name).field("arguments", b.text);
      });
    } else {
      const bool reasoning = b.kind == BlockKind::kReasoning;
      emit(out, reasoning ? "response.reasoning_text.done" : "response.output_text.done", [&](JsonWriter& w) {
        part_head(w, index).field("text", b.text);
        if (!reasoning) w.key("logprobs").begin_array().end_array();
      });
      emit(out, "response.content_part.done", [&](JsonWriter& w) {
        part_head(w, index).key("part");
        write_part(w, b, b.text);
      });
    }
    emit(out, "response.output_item.done", [&](JsonWriter& w) {
      w.field("output_index", static_cast<int64_t>(index)).key("item");
      write_item(w, index, true);
    });
  }

  std::string end_stream(const RequestUsage& usage) override {
    std::string out;
    const char* status = final_status();
    const std::string type = std::string("response.") + (std::string_view(status) == "completed" ? "completed"
                                                         : std::string_view(status) == "incomplete" ? "incomplete"
                                                                                                     : "failed");
    emit(out, type, [&](JsonWriter& w) { write_response(w.key("response"), status, &usage); });
    return out;
  }

  std::string body(const RequestUsage& usage) override {
    JsonWriter w;
    write_response(w, final_status(), &usage);
    return w.take();
  }

 private:
  template <typename Fill>
  void emit(std::string& out, std::string_view type, Fill fill) {
    JsonWriter w;
    w.begin_object().field("type", type).field("sequence_number", sequence_++);
    fill(w);
    w.end_object();
    out.append("event: ").append(type).append("\ndata: ").append(w.str()).append("\n\n");
  }

  const char* final_status() const {
    if (turn_end() == TurnEnd::kAborted) return "failed";
    return turn_end() == TurnEnd::kMaxTokens ? "incomplete" : "completed";
  }

  // "rs_" / "msg_" / "fc_" + the response id's suffix + the output index.
  std::string item_id(size_t index) const {
    const OutputBlock& b = blocks()[index];
    const std::string& id = setup().id;
    const size_t us = id.find('_');
    const std::string suffix = us == std::string::npos ? id : id.substr(us + 1);
    const char* prefix = b.kind == BlockKind::kReasoning ? "rs_" : b.kind == BlockKind::kText ? "msg_" : "fc_";
    return prefix + suffix + "_" + std::to_string(index);
  }

  JsonWriter& part_head(JsonWriter& w, size_t index) const {
    return w.field("item_id", item_id(index)).field("output_index", static_cast<int64_t>(index)).field("content_index", 0);
  }

  static void write_part(JsonWriter& w, const OutputBlock& b, std::string_view text) {
    w.begin_object();
    if (b.kind == BlockKind::kReasoning) {
      w.field("type", "reasoning_text").field("text", text);
    } else {
      w.field("type", "output_text").field("text", text).key("annotations").begin_array().end_array();
      w.key("logprobs").begin_array().end_array();
    }
    w.end_object();
  }

  void write_item(JsonWriter& w, size_t index, bool done) const {
    const OutputBlock& b = blocks()[index];
    const bool cut = index + 1 == blocks().size() && turn_end() == TurnEnd::kMaxTokens;
    const char* status = !done ? "in_progress" : cut ? "incomplete" : "completed";
    w.begin_object().field("id", item_id(index));
    if (b.kind == BlockKind::kReasoning) {
      w.field("type", "reasoning").key("summary").begin_array().end_array();
      w.key("content").begin_array();
      if (done) write_part(w, b, b.text);
      w.end_array();
      if (done && echo_.encrypted_reasoning) w.field("encrypted_content", base64_encode(b.text));
      w.field("status", status);
    } else if (b.kind == BlockKind::kText) {
      w.field("type", "message").field("status", status).field("role", "assistant").key("content").begin_array();
      if (done) write_part(w, b, b.text);
      w.end_array();
    } else {
      w.field("type", "function_call").field("status", done ? (b.complete ? "completed" : "incomplete") : status);
      w.field("call_id", b.call_id).field("name", b.name).field("arguments", done ? b.text : "");
    }
    w.end_object();
  }

  void write_usage(JsonWriter& w, const RequestUsage& usage) const {
    const int64_t prompt = setup().prompt_tokens, out = completion_tokens();
    const int64_t reasoning = reasoning_tokens();
    w.key("usage").begin_object().field("input_tokens", prompt);
    w.key("input_tokens_details").begin_object().field("cached_tokens", std::min(usage.cached_prompt_tokens, prompt)).end_object();
    w.field("output_tokens", out);
    w.key("output_tokens_details").begin_object().field("reasoning_tokens", reasoning).end_object();
    w.field("total_tokens", prompt + out).end_object();
  }

  void write_response(JsonWriter& w, const char* status, const RequestUsage* usage) const {
    const std::string_view st = status;
    w.begin_object().field("id", setup().id).field("object", "response").field("created_at", setup().created);
    w.field("status", status).field("model", setup().model);
    w.key("output").begin_array();
    if (usage)
      for (size_t i = 0; i < blocks().size(); ++i)
        if (blocks()[i].kind != BlockKind::kToolCall || blocks()[i].complete || setup().stream) write_item(w, i, true);
    w.end_array();
    if (st == "failed")
      w.key("error").begin_object().field("code", "server_error").field("message", failure_.empty() ? "The request was aborted" : failure_).end_object();
    else
      w.key("error").null();
    if (st == "incomplete") w.key("incomplete_details").begin_object().field("reason", "max_output_tokens").end_object();
    else w.key("incomplete_details").null();
    write_echo(w);
    if (usage) write_usage(w, *usage);
    else w.key("usage").null();
    w.end_object();
  }

  void write_echo(JsonWriter& w) const {
    if (echo_.instructions) w.field("instructions", *echo_.instructions);
    else w.key("instructions").null();
    if (echo_.max_output_tokens) w.field("max_output_tokens", *echo_.max_output_tokens);
    else w.key("max_output_tokens").null();
    w.field("parallel_tool_calls", true).key("previous_response_id").null();
    w.key("reasoning").begin_object().field_or_null("effort", echo_.effort).key("summary").null().end_object();
    w.field("store", echo_.store).field("temperature", echo_.temperature).field("top_p", echo_.top_p);
    w.key("text").begin_object().key("format").begin_object().field("type", "text").end_object().end_object();
    w.key("tool_choice").raw(echo_.tool_choice_json).key("tools").raw(echo_.tools_json);
    w.field("truncation", "disabled").key("metadata").raw(echo_.metadata_json);
  }

  ResponsesEcho echo_;
  int64_t sequence_ = 0;
  std::string failure_;
};

}  // namespace

std::unique_ptr<ResponseWriter> make_responses_writer(const Tokenizer& tokenizer, ResponseSetup setup,
                                                      AssistantStreamOptions options, ResponsesEcho echo) {
  return std::make_unique<ResponsesWriter>(tokenizer, std::move(setup), std::move(options), std::move(echo));
}

}  // namespace ds4::http
