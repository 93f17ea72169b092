// OpenAI Responses request parsing (see responses_request.h).
#include "http/responses_request.h"

#include <limits>

#include "http/agent_request_parts.h"
#include "http/base64.h"
#include "http/openai_chat_parts.h"

namespace ds4::http {

using simdjson::dom::element_type;

namespace {

ApiError stateless(const std::string& param) {
  return invalid_param(param, "'" + param + "' is not supported: this server is stateless (it stores no responses or "
                                            "conversations); send the whole conversation in 'input'");
}

// The text member of a content part's type (input_text / output_text / text / refusal); null for others.
const char* part_text_key(std::string_view type) {
  if (type == "refusal") return "refusal";
  return type == "input_text" || type == "output_text" || type == "text" ? "text" : nullptr;
}

MaybeError refuse_part(const std::string& pp, std::string_view type) {
  return unsupported(pp + ".type", "'" + pp + ".type': content parts of type '" + std::string(type) +
                                       "' are not supported (the model reads text only)");
}

// A string, or a list of text parts, joined by `sep`, appended to out.
MaybeError read_parts(const Element& v, const std::string& p, const char* sep, std::string& out) {
  static constexpr TextPartRules kContentParts{"an array of content parts", "part", part_text_key, refuse_part};
  return append_text_parts(v, p, sep, kContentParts, out);
}

// Builds the message list; the open assistant message collects one turn's items.
class InputItems {
 public:
  explicit InputItems(std::vector<ChatMessage>& out) : out_(out) {}

  MaybeError add(const Element& item, const std::string& p) {
    if (item.type() != element_type::OBJECT) return wrong_type(p, "an object", item);
    std::string_view type = "message";
    if (!item["type"].get(type) && type != "message") return add_typed(item, p, type);
    std::string_view role;
    Element content;
    if (item["role"].get(role)) return invalid_param(p + ".role", "'" + p + ".role' is required");
    if (role != "user" && role != "system" && role != "developer" && role != "assistant")
      return invalid_param(p + ".role", "'" + p + ".role' must be user, system, developer or assistant");
    if (item["content"].get(content)) return invalid_param(p + ".content", "'" + p + ".content' is required");
    if (role != "assistant") {
      ChatMessage m = chat_message(std::string(role));
      if (auto e = read_parts(content, p + ".content", "\n", m.content)) return e;
      out_.push_back(std::move(m));
      open_ = false;
      return std::nullopt;
    }
    ChatMessage& a = assistant(/*fresh_if_calls=*/true);
    return read_parts(content, p + ".content", "", a.content);
  }

 private:
  MaybeError add_typed(const Element& item, const std::string& p, std::string_view type) {
    if (type == "function_call") return add_call(item, p);
    if (type == "function_call_output") return add_output(item, p);
    if (type == "reasoning") return add_reasoning(item, p);
    if (type == "item_reference") return stateless(p + ".type");
    return unsupported(p + ".type", "'" + p + ".type': input items of type '" + std::string(type) +
                                        "' are not supported (messages, function_call, function_call_output, reasoning)");
  }

  MaybeError add_call(const Element& item, const std::string& p) {
    std::string_view call_id, name, arguments;
    if (item["call_id"].get(call_id) || call_id.empty()) return invalid_param(p + ".call_id", "'" + p + ".call_id' must be a non-empty string");
    if (item["name"].get(name) || name.empty()) return invalid_param(p + ".name", "'" + p + ".name' must be a non-empty string");
    if (item["arguments"].get(arguments)) return invalid_param(p + ".arguments", "'" + p + ".arguments' must be a string");
    assistant(false).tool_calls.push_back(ToolCall{std::string(call_id), std::string(name), std::string(arguments)});
    return std::nullopt;
  }

  MaybeError add_output(const Element& item, const std::string& p) {
    std::string_view call_id;
    Element output;
    if (item["call_id"].get(call_id) || call_id.empty()) return invalid_param(p + ".call_id", "'" + p + ".call_id' must be a non-empty string");
    if (item["output"].get(output)) return invalid_param(p + ".output", "'" + p + ".output' is required");
    ChatMessage tool = chat_message("tool");
    tool.tool_call_id = std::string(call_id);
    if (auto e = read_parts(output, p + ".output", "\n", tool.content)) return e;
    out_.push_back(std::move(tool));
    open_ = false;
    return std::nullopt;
  }

  // Reasoning text from content (reasoning_text parts) or from the encrypted_content we wrote.
  MaybeError add_reasoning(const Element& item, const std::string& p) {
    std::string text;
    Element content;
    std::string_view encrypted;
    if (!item["content"].get(content) && !is_null(content)) {
      if (content.type() != element_type::ARRAY) return wrong_type(p + ".content", "an array", content);
      size_t i = 0;
      for (Element part : array_of(content)) {
        std::string_view t;
        const std::string pp = indexed(p + ".content", i++);
        if (part.type() != element_type::OBJECT || part["text"].get(t)) return invalid_param(pp, "'" + pp + ".text' must be a string");
        text += t;
      }
    } else if (!item["encrypted_content"].get(encrypted) && !encrypted.empty()) {
      std::optional<std::string> decoded = base64_decode(encrypted);
      if (!decoded) return invalid_param(p + ".encrypted_content", "'" + p + ".encrypted_content' was not written by this server");
      text = std::move(*decoded);
    }
    ChatMessage& a = assistant(/*fresh_if_calls=*/true);
    if (!a.content.empty()) {  // reasoning opens a turn: a new assistant message
      out_.push_back(chat_message("assistant"));
      open_ = true;
    }
    out_.back().reasoning_content += text;
    return std::nullopt;
  }

  // The open assistant message (a new one when none is open, or when it already has tool calls
  // and fresh_if_calls: text after calls starts the next turn).
  ChatMessage& assistant(bool fresh_if_calls) {
    const bool usable = open_ && !out_.empty() && out_.back().role == "assistant" &&
                        !(fresh_if_calls && !out_.back().tool_calls.empty());
    if (!usable) out_.push_back(chat_message("assistant"));
    open_ = true;
    return out_.back();
  }

  std::vector<ChatMessage>& out_;
  bool open_ = false;  // the last message is an assistant turn still collecting items
};

MaybeError read_input(const Element& v, std::vector<ChatMessage>& out) {
  if (v.type() == element_type::STRING) {
    out.push_back(chat_message("user", std::string(v.get_string().value_unsafe())));
    return std::nullopt;
  }
  if (v.type() != element_type::ARRAY) return wrong_type("input", "a string or an array of items", v);
  InputItems items(out);
  size_t i = 0;
  for (Element item : array_of(v))
    if (auto e = items.add(item, indexed("input", i++))) return e;
  if (out.empty()) return invalid_param("input", "'input' must hold at least one item");
  return std::nullopt;
}

MaybeError read_tools_field(const Element& v, ChatRequest& req, std::string& echo) {
  if (is_null(v)) return std::nullopt;
  if (v.type() != element_type::ARRAY) return wrong_type("tools", "an array", v);
  size_t i = 0;
  for (Element t : array_of(v)) {
    const std::string p = indexed("tools", i++);
    std::string_view type, name, description;
    if (t.type() != element_type::OBJECT || t["type"].get(type)) return invalid_param(p, "'" + p + "' must be a tool with a 'type'");
    if (type != "function")
      return unsupported(p + ".type", "'" + p + ".type': tools of type '" + std::string(type) + "' are not supported (function tools only)");
    if (t["name"].get(name)) return invalid_param(p + ".name", "'" + p + ".name' must be a non-empty string");
    Element params;
    const bool has_params = !t["parameters"].get(params);
    const bool has_description = !t["description"].get(description);
    if (auto e = add_function_tool(req, p, name, has_description ? std::optional(description) : std::nullopt,
                                   has_params ? &params : nullptr))
      return e;
  }
  echo = simdjson::minify(v);
  return std::nullopt;
}

MaybeError read_tool_choice_field(const Element& v, ToolChoice& out, std::string& echo) {
  if (is_null(v)) return std::nullopt;
  echo = simdjson::minify(v);
  if (v.type() == element_type::STRING) {
    const std::string_view s = v.get_string().value_unsafe();
    if (s == "auto") out.kind = ToolChoiceKind::kAuto;
    else if (s == "none") out.kind = ToolChoiceKind::kNone;
    else if (s == "required") out.kind = ToolChoiceKind::kRequired;
    else return invalid_param("tool_choice", "'tool_choice' must be none, auto, required or a function; got '" + std::string(s) + "'");
    return std::nullopt;
  }
  std::string_view type, name;
  if (v.type() != element_type::OBJECT || v["type"].get(type) || type != "function")
    return unsupported("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"name\": ...}");
  if (v["name"].get(name) || name.empty()) return invalid_param("tool_choice.name", "'tool_choice.name' must name one of the tools");
  out.kind = ToolChoiceKind::kNamed;
  out.name = std::string(name);
  return std::nullopt;
}

MaybeError read_include(const Element& v, ResponsesEcho& echo) {
  std::vector<std::string> include;
  if (auto e = read_string_or_list(v, "include", include)) return e;
  for (const std::string& s : include) echo.encrypted_reasoning = echo.encrypted_reasoning || s == "reasoning.encrypted_content";
  return std::nullopt;
}

MaybeError read_text_field(const Element& v) {
  if (is_null(v)) return std::nullopt;
  std::string_view type;
  if (v.type() != element_type::OBJECT) return wrong_type("text", "an object", v);
  Element format;
  if (!v["format"].get(format) && !is_null(format) && (format["type"].get(type) || type != "text"))
    return unsupported("text.format", "'text.format' other than {\"type\": \"text\"} is not supported by this server");
  return std::nullopt;
}

// Everything that is not input, tools or tool_choice.
MaybeError read_field(std::string_view key, const Element& v, ResponsesRequest& out, bool& handled) {
  handled = true;
  const std::string k(key);
  GenerationFields& g = out.chat.gen;
  std::optional<double> d;
  std::optional<int64_t> i;
  std::optional<bool> b;
  std::optional<std::string> s;
  if (k == "model") {
    if (auto e = read_string(v, k, s)) return e;
    g.model = s.value_or("");
  } else if (k == "instructions") {
    return read_string(v, k, out.echo.instructions);
  } else if (k == "max_output_tokens") {
    if (auto e = read_int(v, k, 1, std::numeric_limits<int64_t>::max(), i)) return e;
    g.max_tokens = out.echo.max_output_tokens = i;
    g.max_tokens_name = k;
  } else if (k == "temperature" || k == "top_p") {
    if (auto e = read_number(v, k, 0.0, k == "top_p" ? 1.0 : 2.0, k == "top_p", d)) return e;
    if (d) (k == "top_p" ? g.sampling.top_p : g.sampling.temperature) = static_cast<float>(*d);
    if (d) (k == "top_p" ? out.echo.top_p : out.echo.temperature) = *d;
  } else if (k == "stream") {
    if (auto e = read_bool(v, k, b)) return e;
    g.stream = b.value_or(false);
  } else if (k == "store") {
    if (auto e = read_bool(v, k, b)) return e;  // accepted; nothing is stored (reported as false)
  } else if (k == "include") {
    if (!is_null(v)) return read_include(v, out.echo);
  } else if (k == "text") {
    return read_text_field(v);
  } else if (k == "metadata") {
    if (!is_null(v) && v.type() != element_type::OBJECT) return wrong_type(k, "an object", v);
    if (!is_null(v)) out.echo.metadata_json = simdjson::minify(v);
  } else if (k == "previous_response_id" || k == "conversation" || k == "prompt") {
    if (!is_null(v)) return stateless(k);
  } else if (k == "background") {
    if (auto e = read_bool(v, k, b)) return e;
    if (b.value_or(false)) return stateless(k);
  } else if (k == "top_logprobs") {
    if (auto e = read_int(v, k, 0, 20, i)) return e;
    if (i.value_or(0) > 0) return unsupported(k, "'top_logprobs' is not supported on /v1/responses");
  } else if (k == "parallel_tool_calls" || k == "truncation" || k == "user" || k == "safety_identifier" ||
             k == "prompt_cache_key" || k == "service_tier" || k == "max_tool_calls" || k == "stream_options" ||
             k == "prompt_cache_retention") {
    // Accepted without effect (prefix caching is automatic here).
  } else {
    handled = false;
  }
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> parse_responses_request(std::string_view body, ResponsesRequest& out) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (auto e = parse_object(parser, body, obj)) return e;
  ChatRequest& req = out.chat;
  std::vector<ChatMessage> messages;
  bool have_input = false;
  for (auto [key, v] : obj) {
    bool handled = false;
    if (key == "input") {
      if (auto e = read_input(v, messages)) return e;
      have_input = true;
    } else if (key == "tools") {
      if (auto e = read_tools_field(v, req, out.echo.tools_json)) return e;
    } else if (key == "tool_choice") {
      if (auto e = read_tool_choice_field(v, req.tool_choice, out.echo.tool_choice_json)) return e;
    } else if (key == "reasoning") {
      if (auto e = read_reasoning_switch(key, v, req.effort, nullptr, handled)) return e;
      Element effort;
      std::string_view name;
      if (v.type() == element_type::OBJECT && !v["effort"].get(effort) && !effort.get(name)) out.echo.effort = std::string(name);
    } else {
      if (auto e = read_field(key, v, out, handled)) return e;
      if (!handled) req.gen.ignored_fields.emplace_back(key);
    }
  }
  if (!have_input) return invalid_param("input", "'input' is required");
  if (auto e = check_tool_choice(req, "tool_choice")) return e;
  if (out.echo.instructions) req.messages.push_back(chat_message("system", *out.echo.instructions));
  for (ChatMessage& m : messages) req.messages.push_back(std::move(m));
  return std::nullopt;
}

}  // namespace ds4::http
