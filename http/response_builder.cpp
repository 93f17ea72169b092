// ResponseBuilder (see response_builder.h): AssistantEvents -> OpenAI chunk / response JSON.
#include "http/response_builder.h"

#include "http/json_writer.h"

namespace ds4::http {

using Kind = AssistantEvent::Kind;

namespace {

bool visible(const AssistantEvent& e, bool include_reasoning) {
  switch (e.kind) {
    case Kind::kReasoning: return include_reasoning && !e.text.empty();
    case Kind::kContent: return !e.text.empty();
    case Kind::kToolCallStart:
    case Kind::kToolCallArguments: return true;
    case Kind::kToolCallEnd:
    case Kind::kWarning: return false;
  }
  return false;
}

void write_token_bytes(JsonWriter& w, const std::string& bytes) {
  w.key("bytes").begin_array();
  for (unsigned char c : bytes) w.number(static_cast<int64_t>(c));
  w.end_array();
}

void write_ids(JsonWriter& w, std::string_view key, std::span<const int32_t> ids) {
  w.key(key).begin_array();
  for (int32_t id : ids) w.number(static_cast<int64_t>(id));
  w.end_array();
}

}  // namespace

ResponseBuilder::ResponseBuilder(const Tokenizer& tokenizer, ResponseSetup setup, AssistantStreamOptions options)
    : tok_(tokenizer), setup_(std::move(setup)), stream_(tokenizer, std::move(options)) {}

void ResponseBuilder::add_forced(std::span<const int32_t> tokens) {
  std::string sse;  // forced text is reported with the first generated chunk
  for (int32_t t : tokens) {
    std::vector<AssistantEvent> events;
    stream_.push(t, events);
    for (auto& e : events) held_events_.push_back(std::move(e));
  }
}

void ResponseBuilder::add_tokens(std::span<const int32_t> tokens, std::span<const SampledLogprobs> logprobs,
                                 std::string& sse) {
  for (size_t i = 0; i < tokens.size(); ++i)
    process(tokens[i], i < logprobs.size() ? &logprobs[i] : nullptr, true, sse);
}

void ResponseBuilder::process(int32_t token, const SampledLogprobs* logprobs, bool count, std::string& sse) {
  if (stream_.stopped()) return;
  std::vector<AssistantEvent> events = std::move(held_events_);
  held_events_.clear();
  stream_.push(token, events);
  if (count) {
    ++completion_tokens_;
    pending_.ids.push_back(token);
    all_ids_.push_back(token);
    if (logprobs) {
      pending_.logprobs.push_back(*logprobs);
      all_logprobs_.push_back(*logprobs);
    }
  }
  if (!setup_.stream) {
    if (!setup_.chat) completion_text_ += completion_text(events);
    return;
  }
  bool any = false;
  for (const auto& e : events) any = any || visible(e, setup_.include_reasoning);
  if (any) emit_chunk(events, nullptr, sse);
  else held_events_ = std::move(events);  // tool-call ends etc. travel with the next chunk
}

void ResponseBuilder::write_chat_delta(JsonWriter& w, std::vector<AssistantEvent>& events) {
  std::string reasoning, content;
  struct CallDelta {
    int index;
    std::string id, name, arguments;
    bool start;
  };
  std::vector<CallDelta> calls;
  for (auto& e : events) {
    if (e.kind == Kind::kReasoning && setup_.include_reasoning) reasoning += e.text;
    else if (e.kind == Kind::kContent) content += e.text;
    else if (e.kind == Kind::kToolCallStart) calls.push_back({e.index, e.id, e.text, "", true});
    else if (e.kind == Kind::kToolCallArguments) {
      if (calls.empty() || calls.back().index != e.index) calls.push_back({e.index, "", "", "", false});
      calls.back().arguments += e.text;
    }
  }
  w.key("delta").begin_object();
  if (!role_sent_) w.field("role", "assistant");
  if (!reasoning.empty()) w.field("reasoning_content", reasoning);
  if (!content.empty() || !role_sent_) w.field("content", content);
  if (!calls.empty()) {
    w.key("tool_calls").begin_array();
    for (const CallDelta& c : calls) {
      w.begin_object().field("index", c.index);
      if (c.start) w.field("id", c.id).field("type", "function");
      w.key("function").begin_object();
      if (c.start) w.field("name", c.name);
      w.field("arguments", c.arguments).end_object().end_object();
    }
    w.end_array();
  }
  w.end_object();
  role_sent_ = true;
}

// Completions show the raw text: re-insert the <think> tags the detokenizer split off.
std::string ResponseBuilder::completion_text(std::vector<AssistantEvent>& events) {
  std::string text;
  if (!role_sent_ && !setup_.echo_text.empty() && setup_.stream) text = setup_.echo_text;
  for (const auto& e : events) {
    if (e.kind == Kind::kReasoning) {
      if (!in_reasoning_) text += "<think>", in_reasoning_ = saw_reasoning_ = true;
      text += e.text;
    } else if (e.kind == Kind::kContent) {
      if (in_reasoning_) text += "</think>", in_reasoning_ = false;
      text += e.text;
    }
  }
  return text;
}

void ResponseBuilder::write_usage(JsonWriter& w, const RequestUsage* usage) const {
  const int64_t cached = usage ? usage->cached_prompt_tokens : 0;
  w.key("usage").begin_object();
  w.field("prompt_tokens", setup_.prompt_tokens).field("completion_tokens", completion_tokens_);
  w.field("total_tokens", setup_.prompt_tokens + completion_tokens_);
  w.key("prompt_tokens_details").begin_object().field("cached_tokens", cached).end_object();
  w.end_object();
}

void ResponseBuilder::emit_chunk(std::vector<AssistantEvent>& events, const char* finish_reason, std::string& sse) {
  JsonWriter w;
  w.begin_object().field("id", setup_.id).field("object", setup_.chat ? "chat.completion.chunk" : "text_completion");
  w.field("created", setup_.created).field("model", setup_.model);
  w.key("choices").begin_array().begin_object().field("index", 0);
  if (setup_.chat) {
    write_chat_delta(w, events);
  } else {
    const std::string text = completion_text(events);
    w.field("text", text);
    role_sent_ = true;
  }
  if (setup_.logprobs && !pending_.logprobs.empty()) {
    write_logprobs(w, pending_.ids, pending_.logprobs, text_offset_);
  } else {
    w.key("logprobs").null();
  }
  if (finish_reason) w.field("finish_reason", finish_reason);
  else w.key("finish_reason").null();
  if (setup_.return_token_ids) write_ids(w, "token_ids", pending_.ids);
  w.end_object().end_array();
  if (setup_.continuous_usage) write_usage(w, nullptr);
  w.end_object();
  for (int32_t id : pending_.ids) text_offset_ += tok_.token_bytes(id).size();
  pending_ = Pending{};
  sse += "data: ";
  sse += w.str();
  sse += "\n\n";
}

void ResponseBuilder::write_logprobs(JsonWriter& w, std::span<const int32_t> ids, std::span<const SampledLogprobs> lps,
                                     size_t text_offset) const {
  const size_t n = std::min(ids.size(), lps.size());
  w.key("logprobs").begin_object();
  if (setup_.chat) {
    w.key("content").begin_array();
    for (size_t i = 0; i < n; ++i) {
      const std::string& bytes = tok_.token_bytes(ids[i]);
      w.begin_object().field("token", bytes).field("logprob", static_cast<double>(lps[i].logprob));
      write_token_bytes(w, bytes);
      w.key("top_logprobs").begin_array();
      for (const TokenLogprob& t : lps[i].top) {
        const std::string& tb = tok_.token_bytes(t.token);
        w.begin_object().field("token", tb).field("logprob", static_cast<double>(t.logprob));
        write_token_bytes(w, tb);
        w.end_object();
      }
      w.end_array().end_object();
    }
    w.end_array();
  } else {
    w.key("tokens").begin_array();
    for (size_t i = 0; i < n; ++i) w.string(tok_.token_bytes(ids[i]));
    w.end_array().key("token_logprobs").begin_array();
    for (size_t i = 0; i < n; ++i) w.number(static_cast<double>(lps[i].logprob));
    w.end_array().key("top_logprobs").begin_array();
    for (size_t i = 0; i < n; ++i) {
      w.begin_object();
      for (const TokenLogprob& t : lps[i].top) w.field(tok_.token_bytes(t.token), static_cast<double>(t.logprob));
      w.end_object();
    }
    w.end_array().key("text_offset").begin_array();
    for (size_t i = 0; i < n; ++i) {
      w.number(static_cast<int64_t>(text_offset));
      text_offset += tok_.token_bytes(ids[i]).size();
    }
    w.end_array();
  }
  w.end_object();
}

std::string ResponseBuilder::finish(FinishReason reason, const RequestUsage& usage) {
  std::vector<AssistantEvent> events = std::move(held_events_);
  held_events_.clear();
  stream_.finish(events);
  if (reason == FinishReason::kLength && !stream_.stopped()) finish_reason_ = "length";
  else if (reason == FinishReason::kAbort && !stream_.stopped()) finish_reason_ = "abort";
  else finish_reason_ = stream_.message().tool_calls.empty() ? "stop" : "tool_calls";
  if (!setup_.stream) {
    if (!setup_.chat) completion_text_ += completion_text(events);
    return setup_.chat ? chat_body(usage) : completion_body(usage);
  }
  std::string sse;
  emit_chunk(events, finish_reason_.c_str(), sse);
  if (setup_.include_usage) {
    JsonWriter w;
    w.begin_object().field("id", setup_.id).field("object", setup_.chat ? "chat.completion.chunk" : "text_completion");
    w.field("created", setup_.created).field("model", setup_.model);
    w.key("choices").begin_array().end_array();
    write_usage(w, &usage);
    w.end_object();
    sse += "data: " + w.str() + "\n\n";
  }
  sse += "data: [DONE]\n\n";
  return sse;
}

std::string ResponseBuilder::chat_body(const RequestUsage& usage) {
  const AssistantMessage& m = stream_.message();
  JsonWriter w;
  w.begin_object().field("id", setup_.id).field("object", "chat.completion").field("created", setup_.created);
  w.field("model", setup_.model).key("choices").begin_array().begin_object().field("index", 0);
  w.key("message").begin_object().field("role", "assistant");
  if (m.content.empty() && !m.tool_calls.empty()) w.key("content").null();
  else w.field("content", m.content);
  if (setup_.include_reasoning && !m.reasoning.empty()) w.field("reasoning_content", m.reasoning);
  if (!m.tool_calls.empty()) {
    w.key("tool_calls").begin_array();
    for (const ToolCall& c : m.tool_calls) {
      w.begin_object().field("id", c.id).field("type", "function").key("function").begin_object();
      w.field("name", c.name).field("arguments", c.arguments.empty() ? std::string("{}") : c.arguments);
      w.end_object().end_object();
    }
    w.end_array();
  }
  w.end_object();
  if (setup_.logprobs) write_logprobs(w, all_ids_, all_logprobs_, 0);
  else w.key("logprobs").null();
  w.field("finish_reason", finish_reason_);
  if (setup_.return_token_ids) write_ids(w, "token_ids", all_ids_);
  w.end_object().end_array();
  write_usage(w, &usage);
  if (setup_.return_token_ids) write_ids(w, "prompt_token_ids", setup_.prompt_token_ids);
  w.end_object();
  return w.take();
}

std::string ResponseBuilder::completion_body(const RequestUsage& usage) {
  JsonWriter w;
  w.begin_object().field("id", setup_.id).field("object", "text_completion").field("created", setup_.created);
  w.field("model", setup_.model).key("choices").begin_array().begin_object().field("index", 0);
  w.field("text", setup_.echo_text + completion_text_);
  if (setup_.logprobs) write_logprobs(w, all_ids_, all_logprobs_, setup_.echo_text.size());
  else w.key("logprobs").null();
  w.field("finish_reason", finish_reason_);
  if (setup_.return_token_ids) write_ids(w, "token_ids", all_ids_);
  w.end_object().end_array();
  write_usage(w, &usage);
  w.end_object();
  return w.take();
}

std::string ResponseBuilder::stream_error(const ApiError& error) {
  return "data: " + error_body(error) + "\n\ndata: [DONE]\n\n";
}

}  // namespace ds4::http
