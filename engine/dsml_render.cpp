// Canonical DSML rendering of tool calls (the official encoder's layout, see engine/dsml.h).
#include <string>

#include "engine/dsml.h"
#include "engine/json_text.h"

namespace ds4 {
namespace {

constexpr std::string_view kParamClose = "</｜DSML｜parameter>";

bool starts_entity(std::string_view s, size_t amp) {
  for (std::string_view e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
    if (s.substr(amp, e.size()) == e) return true;
  return false;
}

void append_attribute(std::string_view s, std::string& out) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '"') out += "&quot;";
    else if (s[i] == '&' && starts_entity(s, i)) out += "&amp;";
    else out.push_back(s[i]);
  }
}

// Replaces each occurrence of kParamClose in s by prefix + (kParamClose without its '<').
void append_guarded(std::string_view s, std::string_view prefix, std::string& out) {
  for (size_t pos = 0;;) {
    const size_t hit = s.find(kParamClose, pos);
    if (hit == std::string_view::npos) { out.append(s.substr(pos)); return; }
    out.append(s.substr(pos, hit - pos));
    out.append(prefix);
    out.append(kParamClose.substr(1));
    pos = hit + kParamClose.size();
  }
}

void append_parameter(std::string_view key, const JsonValue* value, std::string_view raw_string,
                      std::string& out) {
  const bool is_string = !value || value->kind == JsonValue::Kind::kString;
  out += "<｜DSML｜parameter name=\"";
  append_attribute(key, out);
  out += is_string ? "\" string=\"true\">" : "\" string=\"false\">";
  if (!value) append_guarded(raw_string, "&lt;", out);
  else if (is_string) append_guarded(value->text, "&lt;", out);
  else append_guarded(to_json(*value, JsonStyle::kPython), "\\u003c", out);
  out += kParamClose;
}

void append_invoke(const ToolCall& call, std::string& out) {
  out += "<｜DSML｜invoke name=\"";
  append_attribute(call.name, out);
  out += "\">\n";
  const size_t first = call.arguments.find_first_not_of(" \t\r\n");
  if (first != std::string::npos) {
    const std::optional<JsonValue> args = parse_json(call.arguments);
    if (args && args->kind == JsonValue::Kind::kObject) {
      for (size_t i = 0; i < args->members.size(); ++i) {
        if (i) out.push_back('\n');
        append_parameter(args->members[i].first, &args->members[i].second, {}, out);
      }
    } else {
      append_parameter("arguments", nullptr, call.arguments, out);
    }
  }
  out += "\n</｜DSML｜invoke>";
}

}  // namespace

std::string render_dsml_tool_calls(const std::vector<ToolCall>& calls) {
  if (calls.empty()) return {};
  std::string out = "\n\n<｜DSML｜tool_calls>\n";
  for (size_t i = 0; i < calls.size(); ++i) {
    if (i) out.push_back('\n');
    append_invoke(calls[i], out);
  }
  out += "\n</｜DSML｜tool_calls>";
  return out;
}

}  // namespace ds4
