// Anthropic Messages request parsing (see anthropic_request.h).
#include "http/anthropic_request.h"

#include <limits>

#include "http/agent_request_parts.h"

namespace ds4::http {

using simdjson::dom::element_type;

namespace {

MaybeError refuse_block(const std::string& p, std::string_view type) {
  return unsupported(p + ".type", "'" + p + ".type': content blocks of type '" + std::string(type) +
                                      "' are not supported (the model reads text, tool calls and tool results)");
}

// A string or a list of text blocks, joined by "\n" (system prompts, tool_result content); out is
// empty before.
MaybeError read_text(const Element& v, const std::string& p, std::string& out) {
  static constexpr TextPartRules kTextBlocks{
      "an array of text blocks", "block", [](std::string_view type) { return type == "text" ? "text" : nullptr; },
      refuse_block};
  return append_text_parts(v, p, "\n", kTextBlocks, out);
}

// One user message: text blocks become a user message, tool_result blocks tool messages, in order.
MaybeError read_user_blocks(const Element& content, const std::string& p, std::vector<ChatMessage>& out) {
  ChatMessage user = chat_message("user");
  bool have_user = false;
  auto flush = [&] {
    if (have_user) out.push_back(std::move(user));
    user = chat_message("user");
    have_user = false;
  };
  size_t i = 0;
  for (Element block : array_of(content)) {
    const std::string bp = indexed(p, i++);
    std::string_view type;
    if (block.type() != element_type::OBJECT || block["type"].get(type)) return invalid_param(bp, "'" + bp + "' must be a block with a 'type'");
    if (type == "text") {
      std::string_view text;
      if (block["text"].get(text)) return invalid_param(bp + ".text", "'" + bp + ".text' must be a string");
      if (have_user) user.content += '\n';
      user.content += text;
      have_user = true;
    } else if (type == "tool_result") {
      flush();
      ChatMessage tool = chat_message("tool");
      std::string_view id;
      if (block["tool_use_id"].get(id) || id.empty())
        return invalid_param(bp + ".tool_use_id", "'" + bp + ".tool_use_id' must be a non-empty string");
      tool.tool_call_id = std::string(id);
      Element c;
      if (!block["content"].get(c) && !is_null(c))
        if (auto e = read_text(c, bp + ".content", tool.content)) return e;
      out.push_back(std::move(tool));
    } else {
      return refuse_block(bp, type);
    }
  }
  flush();
  return std::nullopt;
}

MaybeError read_assistant_blocks(const Element& content, const std::string& p, ChatMessage& msg) {
  size_t i = 0;
  for (Element block : array_of(content)) {
    const std::string bp = indexed(p, i++);
    std::string_view type, text;
    if (block.type() != element_type::OBJECT || block["type"].get(type)) return invalid_param(bp, "'" + bp + "' must be a block with a 'type'");
    if (type == "text") {
      if (block["text"].get(text)) return invalid_param(bp + ".text", "'" + bp + ".text' must be a string");
      msg.content += text;  // our own output has one text block; "" keeps a split one exact
    } else if (type == "thinking") {
      if (block["thinking"].get(text)) return invalid_param(bp + ".thinking", "'" + bp + ".thinking' must be a string");
      msg.reasoning_content += text;
    } else if (type == "redacted_thinking") {
      continue;  // opaque and never produced here: nothing to render
    } else if (type == "tool_use") {
      ToolCall call;
      std::string_view id, name;
      Element input;
      if (block["id"].get(id) || id.empty()) return invalid_param(bp + ".id", "'" + bp + ".id' must be a non-empty string");
      if (block["name"].get(name) || name.empty()) return invalid_param(bp + ".name", "'" + bp + ".name' must be a non-empty string");
      if (block["input"].get(input) || input.type() != element_type::OBJECT)
        return invalid_param(bp + ".input", "'" + bp + ".input' must be an object");
      call.id = std::string(id);
      call.name = std::string(name);
      call.arguments = simdjson::minify(input);
      msg.tool_calls.push_back(std::move(call));
    } else {
      return refuse_block(bp, type);
    }
  }
  return std::nullopt;
}

MaybeError read_messages_field(const Element& v, std::vector<ChatMessage>& out) {
  if (v.type() != element_type::ARRAY) return wrong_type("messages", "an array", v);
  size_t i = 0;
  for (Element m : array_of(v)) {
    const std::string p = indexed("messages", i++);
    std::string_view role;
    Element content;
    if (m.type() != element_type::OBJECT) return wrong_type(p, "an object", m);
    if (m["role"].get(role) || (role != "user" && role != "assistant"))
      return invalid_param(p + ".role", "'" + p + ".role' must be 'user' or 'assistant'");
    if (m["content"].get(content)) return invalid_param(p + ".content", "'" + p + ".content' is required");
    if (content.type() == element_type::STRING) {
      out.push_back(chat_message(std::string(role), std::string(content.get_string().value_unsafe())));
      continue;
    }
    if (content.type() != element_type::ARRAY) return wrong_type(p + ".content", "a string or an array of content blocks", content);
    if (role == "user") {
      if (auto e = read_user_blocks(content, p + ".content", out)) return e;
      continue;
    }
    ChatMessage msg = chat_message("assistant");
    if (auto e = read_assistant_blocks(content, p + ".content", msg)) return e;
    out.push_back(std::move(msg));
  }
  if (out.empty()) return invalid_param("messages", "'messages' must hold at least one message");
  return std::nullopt;
}

MaybeError read_tools_field(const Element& v, ChatRequest& req) {
  if (is_null(v)) return std::nullopt;
  if (v.type() != element_type::ARRAY) return wrong_type("tools", "an array", v);
  size_t i = 0;
  for (Element t : array_of(v)) {
    const std::string p = indexed("tools", i++);
    if (t.type() != element_type::OBJECT) return wrong_type(p, "an object", t);
    std::string_view type = "custom", name, description;
    if (!t["type"].get(type) && type != "custom")
      return unsupported(p + ".type", "'" + p + ".type': server tools ('" + std::string(type) +
                                          "') are not supported; define client tools with name and input_schema");
    if (t["name"].get(name)) return invalid_param(p + ".name", "'" + p + ".name' must be a non-empty string");
    Element schema;
    const bool has_schema = !t["input_schema"].get(schema);
    const bool has_description = !t["description"].get(description);
    if (auto e = add_function_tool(req, p, name, has_description ? std::optional(description) : std::nullopt,
                                   has_schema ? &schema : nullptr))
      return e;
  }
  return std::nullopt;
}

MaybeError read_tool_choice_field(const Element& v, ToolChoice& out) {
  if (is_null(v)) return std::nullopt;
  std::string_view type, name;
  if (v.type() != element_type::OBJECT || v["type"].get(type))
    return invalid_param("tool_choice", "'tool_choice' must be an object with a 'type' (auto, any, tool, none)");
  if (type == "auto") out.kind = ToolChoiceKind::kAuto;
  else if (type == "any") out.kind = ToolChoiceKind::kRequired;
  else if (type == "none") out.kind = ToolChoiceKind::kNone;
  else if (type == "tool") {
    if (v["name"].get(name) || name.empty()) return invalid_param("tool_choice.name", "'tool_choice.name' must name one of the tools");
    out.kind = ToolChoiceKind::kNamed;
    out.name = std::string(name);
  } else {
    return invalid_param("tool_choice.type", "'tool_choice.type' must be auto, any, tool or none; got '" + std::string(type) + "'");
  }
  return std::nullopt;
}

MaybeError read_thinking(const Element& v, AnthropicRequest& out) {
  out.chat.effort = ReasoningEffort::kNone;
  if (is_null(v)) return std::nullopt;
  std::string_view type;
  if (v.type() != element_type::OBJECT || v["type"].get(type))
    return invalid_param("thinking", "'thinking' must be {\"type\": \"enabled\", \"budget_tokens\": N} or {\"type\": \"disabled\"}");
  if (type == "disabled") return std::nullopt;
  if (type != "enabled" && type != "adaptive" && type != "between_tools")
    return invalid_param("thinking.type", "'thinking.type' must be enabled, adaptive, between_tools or disabled; got '" +
                                              std::string(type) + "'");
  out.chat.effort = ReasoningEffort::kHigh;
  Element budget;
  if (v["budget_tokens"].get(budget)) {
    if (type == "enabled") return invalid_param("thinking.budget_tokens", "'thinking.budget_tokens' is required when thinking is enabled");
    return std::nullopt;
  }
  return read_int(budget, "thinking.budget_tokens", 1, std::numeric_limits<int32_t>::max(), out.thinking_budget);
}

// Sampling and limits: the Anthropic names and ranges.
MaybeError read_generation(std::string_view key, const Element& v, GenerationFields& g, bool& handled) {
  handled = true;
  const std::string k(key);
  std::optional<double> d;
  std::optional<int64_t> i;
  std::optional<bool> b;
  std::optional<std::string> s;
  if (k == "model") {
    if (auto e = read_string(v, k, s)) return e;
    g.model = s.value_or("");
  } else if (k == "max_tokens") {
    if (auto e = read_int(v, k, 1, std::numeric_limits<int64_t>::max(), i)) return e;
    g.max_tokens = i;
  } else if (k == "temperature") {
    if (auto e = read_number(v, k, 0.0, 1.0, false, d)) return e;
    if (d) g.sampling.temperature = static_cast<float>(*d);
  } else if (k == "top_p") {
    if (auto e = read_number(v, k, 0.0, 1.0, true, d)) return e;
    if (d) g.sampling.top_p = static_cast<float>(*d);
  } else if (k == "top_k") {
    if (auto e = read_int(v, k, 0, std::numeric_limits<int32_t>::max(), i)) return e;
    if (i) g.sampling.top_k = static_cast<int>(*i);
  } else if (k == "stop_sequences") {
    if (is_null(v)) return std::nullopt;
    g.stop_name = k;
    if (v.type() != element_type::ARRAY) return wrong_type(k, "an array of strings", v);
    return read_string_or_list(v, k, g.stop);
  } else if (k == "stream") {
    if (auto e = read_bool(v, k, b)) return e;
    g.stream = b.value_or(false);
  } else if (k == "metadata" || k == "service_tier" || k == "cache_control" || k == "context_management" ||
             k == "speed" || k == "inference_geo" || k == "diagnostics" || k == "user_profile_id" ||
             k == "workspace_id") {
    // Accepted without effect (prefix caching is automatic here).
  } else if (k == "output_config") {  // effort is accepted; structured output is not implemented
    Element format;
    if (!is_null(v) && v.type() != element_type::OBJECT) return wrong_type(k, "an object", v);
    if (!is_null(v) && !v["format"].get(format) && !is_null(format))
      return unsupported("output_config.format", "'output_config.format' (structured output) is not supported by this server");
  } else if (k == "mcp_servers" || k == "container") {
    if (!is_null(v)) return unsupported(k, "'" + k + "' is not supported by this server");
  } else {
    handled = false;
  }
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> parse_anthropic_request(std::string_view body, bool count_tokens, AnthropicRequest& out) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (auto e = parse_object(parser, body, obj)) return e;
  ChatRequest& req = out.chat;
  req.gen.sampling.temperature = 1.0f;
  req.effort = ReasoningEffort::kNone;
  std::vector<ChatMessage> system, messages;
  bool have_messages = false;
  std::optional<Element> choice;
  for (auto [key, v] : obj) {
    bool handled = false;
    if (key == "messages") {
      if (auto e = read_messages_field(v, messages)) return e;
      have_messages = true;
    } else if (key == "system") {
      if (is_null(v)) continue;
      system.push_back(chat_message("system"));
      if (auto e = read_text(v, "system", system.back().content)) return e;
    } else if (key == "tools") {
      if (auto e = read_tools_field(v, req)) return e;
    } else if (key == "tool_choice") {
      choice = v;
    } else if (key == "thinking") {
      if (auto e = read_thinking(v, out)) return e;
    } else {
      if (auto e = read_generation(key, v, req.gen, handled)) return e;
      if (!handled) req.gen.ignored_fields.emplace_back(key);
    }
  }
  if (!have_messages) return invalid_param("messages", "'messages' is required");
  if (!count_tokens && !req.gen.max_tokens) return invalid_param("max_tokens", "'max_tokens' is required");
  if (choice)
    if (auto e = read_tool_choice_field(*choice, req.tool_choice)) return e;
  if (auto e = check_tool_choice(req, "tool_choice")) return e;
  req.messages = std::move(system);
  for (ChatMessage& m : messages) req.messages.push_back(std::move(m));
  return std::nullopt;
}

}  // namespace ds4::http
