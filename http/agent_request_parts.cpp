// Shared pieces of the agent API parsers (see agent_request_parts.h).
#include "http/agent_request_parts.h"

#include <algorithm>

#include "http/json_writer.h"

namespace ds4::http {

using simdjson::dom::element_type;

MaybeError add_function_tool(ChatRequest& req, const std::string& param, std::string_view name,
                             std::optional<std::string_view> description, const Element* parameters) {
  if (name.empty()) return invalid_param(param + ".name", "'" + param + ".name' must be a non-empty string");
  if (std::find(req.tool_names.begin(), req.tool_names.end(), name) != req.tool_names.end())
    return invalid_param(param + ".name", "'" + param + ".name': the tool name '" + std::string(name) + "' is used twice");
  bool takes_arguments = false;
  JsonWriter w;
  w.begin_object().field("type", "function").key("function").begin_object().field("name", name);
  if (description) w.field("description", *description);
  if (parameters && !is_null(*parameters)) {
    if (parameters->type() != element_type::OBJECT) return wrong_type(param + ".parameters", "an object", *parameters);
    simdjson::dom::object properties;
    takes_arguments = !(*parameters)["properties"].get(properties) && properties.size() > 0;
    w.key("parameters").raw(simdjson::minify(*parameters));
  }
  w.end_object().end_object();
  req.tools.push_back(w.take());
  req.tool_names.emplace_back(name);
  req.tool_takes_arguments.push_back(takes_arguments);
  return std::nullopt;
}

MaybeError check_tool_choice(const ChatRequest& req, const std::string& param) {
  const ToolChoice& c = req.tool_choice;
  if ((c.kind == ToolChoiceKind::kRequired || c.kind == ToolChoiceKind::kNamed) && req.tools.empty())
    return invalid_param(param, "'" + param + "' requires 'tools'");
  if (c.kind == ToolChoiceKind::kNamed &&
      std::find(req.tool_names.begin(), req.tool_names.end(), c.name) == req.tool_names.end())
    return invalid_param(param, "'" + param + "' names the tool '" + c.name + "', which is not in 'tools'");
  return std::nullopt;
}

MaybeError append_text_parts(const Element& v, const std::string& param, std::string_view sep,
                             const TextPartRules& rules, std::string& out) {
  if (v.type() == simdjson::dom::element_type::STRING) {
    out += v.get_string().value_unsafe();
    return std::nullopt;
  }
  if (v.type() != simdjson::dom::element_type::ARRAY)
    return wrong_type(param, std::string("a string or ") + rules.array_desc, v);
  size_t i = 0;
  for (Element part : array_of(v)) {
    const std::string pp = indexed(param, i++);
    std::string_view type, text;
    if (part.type() != simdjson::dom::element_type::OBJECT || part["type"].get(type))
      return invalid_param(pp, "'" + pp + "' must be a " + rules.item + " with a 'type'");
    const char* key = rules.text_key(type);
    if (!key) return rules.refuse(pp, type);
    if (part[key].get(text)) return invalid_param(pp + "." + key, "'" + pp + "." + key + "' must be a string");
    if (i > 1) out += sep;
    out += text;
  }
  return std::nullopt;
}

}  // namespace ds4::http
