// Parsing of /v1/chat/completions bodies: messages (string or text-part content, assistant tool
// calls and reasoning, tool results), tools, tool_choice and the reasoning switches (see
// openai_request.h). Images and audio parts are refused: the model is text-only.
#include <algorithm>

#include "http/openai_chat_parts.h"

namespace ds4::http {

using simdjson::dom::element_type;

namespace {

std::string at(const std::string& base, size_t i) { return base + "[" + std::to_string(i) + "]"; }

// content: a string, null, or a list of {"type":"text","text":...} parts (joined by "\n").
MaybeError read_content(const Element& v, const std::string& param, std::string& out, bool& given) {
  given = !is_null(v);
  if (!given) return std::nullopt;
  if (v.type() == element_type::STRING) {
    out = std::string(v.get_string().value_unsafe());
    return std::nullopt;
  }
  if (v.type() != element_type::ARRAY) return wrong_type(param, "a string or an array of content parts", v);
  size_t i = 0;
  for (Element part : array_of(v)) {
    const std::string p = at(param, i++);
    std::string_view type, text;
    if (part.type() != element_type::OBJECT) return wrong_type(p, "an object", part);
    if (part["type"].get(type)) return invalid_param(p + ".type", "'" + p + ".type' is required");
    if (type != "text" && type != "input_text")
      return unsupported(p + ".type", "'" + p + ".type': content parts of type '" + std::string(type) +
                                          "' are not supported (the model reads text only)");
    if (part["text"].get(text)) return invalid_param(p + ".text", "'" + p + ".text' must be a string");
    if (i > 1) out += '\n';
    out += text;
  }
  return std::nullopt;
}

// arguments: a JSON text string (OpenAI) or, leniently, the object itself.
MaybeError read_arguments(const Element& v, const std::string& param, std::string& out) {
  if (v.type() == element_type::STRING) {
    out = std::string(v.get_string().value_unsafe());
    return std::nullopt;
  }
  if (v.type() == element_type::OBJECT) {
    out = simdjson::minify(v);
    return std::nullopt;
  }
  return wrong_type(param, "a string", v);
}

MaybeError read_tool_calls(const Element& v, const std::string& param, std::vector<ToolCall>& out) {
  if (is_null(v)) return std::nullopt;
  if (v.type() != element_type::ARRAY) return wrong_type(param, "an array", v);
  size_t i = 0;
  for (Element call : array_of(v)) {
    const std::string p = at(param, i++);
    if (call.type() != element_type::OBJECT) return wrong_type(p, "an object", call);
    ToolCall tc;
    std::string_view id, name;
    Element fn, args;
    if (!call["id"].get(id)) tc.id = std::string(id);
    if (call["function"].get(fn) || fn.type() != element_type::OBJECT)
      return invalid_param(p + ".function", "'" + p + ".function' must be an object");
    if (fn["name"].get(name) || name.empty())
      return invalid_param(p + ".function.name", "'" + p + ".function.name' must be a non-empty string");
    tc.name = std::string(name);
    if (!fn["arguments"].get(args) && !is_null(args))
      if (auto e = read_arguments(args, p + ".function.arguments", tc.arguments)) return e;
    out.push_back(std::move(tc));
  }
  return std::nullopt;
}

bool known_role(std::string_view role) {
  return role == "system" || role == "developer" || role == "user" || role == "assistant" || role == "tool" ||
         role == "function";
}

MaybeError read_message(const Element& m, const std::string& p, ChatMessage& msg) {
  if (m.type() != element_type::OBJECT) return wrong_type(p, "an object", m);
  std::string_view role;
  if (m["role"].get(role)) return invalid_param(p + ".role", "'" + p + ".role' is required and must be a string");
  if (!known_role(role))
    return invalid_param(p + ".role", "'" + p + ".role' must be one of system, developer, user, assistant, tool; got '" +
                                          std::string(role) + "'");
  msg.role = std::string(role);
  bool has_content = false;
  for (auto [key, v] : object_of(m)) {
    const std::string kp = p + "." + std::string(key);
    std::optional<std::string> s;
    if (key == "content") {
      if (auto e = read_content(v, kp, msg.content, has_content)) return e;
    } else if (key == "reasoning_content" || key == "reasoning") {
      if (auto e = read_string(v, kp, s)) return e;
      if (s) msg.reasoning_content = *s;
    } else if (key == "tool_calls") {
      if (auto e = read_tool_calls(v, kp, msg.tool_calls)) return e;
    } else if (key == "tool_call_id" || key == "name") {
      if (auto e = read_string(v, kp, s)) return e;
      (key == "name" ? msg.name : msg.tool_call_id) = s.value_or("");
    }
  }
  if (!has_content && msg.tool_calls.empty() && msg.role != "assistant")
    return invalid_param(p + ".content", "'" + p + ".content' is required for a " + msg.role + " message");
  return std::nullopt;
}

MaybeError read_tool_choice(const Element& v, const std::vector<std::string>& names, ToolChoice& out) {
  const std::string p = "tool_choice";
  if (is_null(v)) return std::nullopt;
  if (v.type() == element_type::STRING) {
    const std::string_view s = v.get_string().value_unsafe();
    if (s == "auto") out.kind = ToolChoiceKind::kAuto;
    else if (s == "none") out.kind = ToolChoiceKind::kNone;
    else if (s == "required") out.kind = ToolChoiceKind::kRequired;
    else return invalid_param(p, "'tool_choice' must be none, auto, required or a named function; got '" + std::string(s) + "'");
  } else if (v.type() == element_type::OBJECT) {
    std::string_view name;
    if (v["function"]["name"].get(name) || name.empty())
      return invalid_param(p, "'tool_choice.function.name' must name one of the tools");
    out.kind = ToolChoiceKind::kNamed;
    out.name = std::string(name);
  } else {
    return wrong_type(p, "a string or an object", v);
  }
  if (out.kind != ToolChoiceKind::kNone && out.kind != ToolChoiceKind::kAuto && names.empty())
    return invalid_param(p, "'tool_choice' requires 'tools'");
  if (out.kind == ToolChoiceKind::kNamed && std::find(names.begin(), names.end(), out.name) == names.end())
    return invalid_param(p, "'tool_choice' names the function '" + out.name + "', which is not in 'tools'");
  return std::nullopt;
}

MaybeError effort_from_string(const Element& v, const std::string& param, std::optional<ReasoningEffort>& effort) {
  std::optional<std::string> s;
  if (auto e = read_string(v, param, s)) return e;
  if (!s) return std::nullopt;
  effort = parse_reasoning_effort(*s);
  if (!effort)
    return invalid_param(param, "'" + param + "' must be one of none, minimal, low, medium, high, xhigh, max; got '" +
                                    *s + "'");
  return std::nullopt;
}

MaybeError effort_from_bool(const Element& v, const std::string& param, std::optional<ReasoningEffort>& effort) {
  std::optional<bool> b;
  if (auto e = read_bool(v, param, b)) return e;
  if (b) effort = *b ? ReasoningEffort::kHigh : ReasoningEffort::kNone;
  return std::nullopt;
}

}  // namespace

MaybeError read_messages(const Element& v, std::vector<ChatMessage>& out) {
  if (v.type() != element_type::ARRAY) return wrong_type("messages", "an array", v);
  out.clear();
  size_t i = 0;
  for (Element m : array_of(v)) {
    ChatMessage msg;
    if (auto e = read_message(m, at("messages", i++), msg)) return e;
    out.push_back(std::move(msg));
  }
  if (out.empty()) return invalid_param("messages", "'messages' must hold at least one message");
  return std::nullopt;
}

MaybeError read_tools(const Element& v, std::vector<std::string>& tools, std::vector<std::string>& names,
                      std::vector<bool>& takes_arguments) {
  if (is_null(v)) return std::nullopt;
  if (v.type() != element_type::ARRAY) return wrong_type("tools", "an array", v);
  size_t i = 0;
  for (Element t : array_of(v)) {
    const std::string p = at("tools", i++);
    std::string_view type = "function", name;
    Element fn;
    if (t.type() != element_type::OBJECT) return wrong_type(p, "an object", t);
    if (!t["type"].get(type) && type != "function")
      return unsupported(p + ".type", "Only tools of type 'function' are supported; got '" + std::string(type) + "'");
    if (t["function"].get(fn) || fn.type() != element_type::OBJECT)
      return invalid_param(p + ".function", "'" + p + ".function' must be an object");
    if (fn["name"].get(name) || name.empty())
      return invalid_param(p + ".function.name", "'" + p + ".function.name' must be a non-empty string");
    Element params;
    bool has_params = !fn["parameters"].get(params) && !is_null(params);
    if (has_params && params.type() != element_type::OBJECT)
      return wrong_type(p + ".function.parameters", "an object", params);
    simdjson::dom::object properties;
    if (has_params && !params["properties"].get(properties)) has_params = properties.size() > 0;
    tools.push_back(simdjson::minify(t));
    names.emplace_back(name);
    takes_arguments.push_back(has_params);
  }
  return std::nullopt;
}

MaybeError read_reasoning_switch(std::string_view key, const Element& v, std::optional<ReasoningEffort>& effort,
                                 bool* include_reasoning, bool& handled) {
  handled = true;
  if (key == "reasoning_effort") return effort_from_string(v, "reasoning_effort", effort);
  if (key == "thinking") {  // DeepSeek / Anthropic style: {"type": "enabled" | "disabled"} or a boolean
    if (v.type() == element_type::BOOL || is_null(v)) return effort_from_bool(v, "thinking", effort);
    std::string_view type;
    if (v.type() != element_type::OBJECT || v["type"].get(type) || (type != "enabled" && type != "disabled"))
      return invalid_param("thinking", "'thinking' must be {\"type\": \"enabled\"} or {\"type\": \"disabled\"}");
    effort = type == "enabled" ? ReasoningEffort::kHigh : ReasoningEffort::kNone;
    return std::nullopt;
  }
  if (key == "reasoning") {  // {"effort": "..."}
    if (is_null(v)) return std::nullopt;
    if (v.type() != element_type::OBJECT) return wrong_type("reasoning", "an object", v);
    Element e;
    if (!v["effort"].get(e)) return effort_from_string(e, "reasoning.effort", effort);
    return std::nullopt;
  }
  if (key == "chat_template_kwargs") {
    if (is_null(v)) return std::nullopt;
    if (v.type() != element_type::OBJECT) return wrong_type("chat_template_kwargs", "an object", v);
    for (auto [k, item] : object_of(v)) {
      const std::string p = "chat_template_kwargs." + std::string(k);
      if (k == "thinking" || k == "enable_thinking") {
        if (auto e = effort_from_bool(item, p, effort)) return e;
      } else if (k == "reasoning_effort") {
        if (auto e = effort_from_string(item, p, effort)) return e;
      }
    }
    return std::nullopt;
  }
  if (key == "include_reasoning" && include_reasoning) {
    std::optional<bool> b;
    if (auto e = read_bool(v, "include_reasoning", b)) return e;
    *include_reasoning = b.value_or(true);
    return std::nullopt;
  }
  handled = false;
  return std::nullopt;
}

MaybeError parse_chat_request(std::string_view body, ChatRequest& out) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (auto e = parse_object(parser, body, obj)) return e;
  bool have_messages = false;
  for (auto [key, v] : obj) {
    bool handled = false;
    if (key == "messages") {
      if (auto e = read_messages(v, out.messages)) return e;
      have_messages = true;
    } else if (key == "tools") {
      if (auto e = read_tools(v, out.tools, out.tool_names, out.tool_takes_arguments)) return e;
    } else if (key == "tool_choice") {
      continue;  // needs the tool names: read below
    } else if (key == "logprobs") {
      std::optional<bool> b;
      if (auto e = read_bool(v, "logprobs", b)) return e;
      out.gen.logprobs = b.value_or(false);
    } else if (key == "top_logprobs") {
      std::optional<int64_t> n;
      if (auto e = read_int(v, "top_logprobs", 0, kMaxTopLogprobsParam, n)) return e;
      out.gen.top_logprobs = static_cast<int>(n.value_or(0));
    } else {
      if (auto e = read_reasoning_switch(key, v, out.effort, &out.include_reasoning, handled)) return e;
      if (handled) continue;
      if (auto e = read_generation_field(key, v, out.gen, handled)) return e;
      if (!handled) out.gen.ignored_fields.emplace_back(key);
    }
  }
  if (!have_messages) return invalid_param("messages", "'messages' is required");
  Element choice;
  if (!obj["tool_choice"].get(choice))
    if (auto e = read_tool_choice(choice, out.tool_names, out.tool_choice)) return e;
  if (out.gen.top_logprobs > 0 && !out.gen.logprobs)
    return invalid_param("top_logprobs", "'top_logprobs' requires 'logprobs': true");
  return finish_generation_fields(obj, out.gen);
}

}  // namespace ds4::http
