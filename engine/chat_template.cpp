// Chat rendering: normalise roles, merge user/tool turns, sort tool results, then render turn by
// turn with the official encoder's transitions (see engine/chat_template.h).
#include "engine/chat_template.h"

#include <algorithm>
#include <unordered_map>

#include "engine/json_text.h"
#include "engine/tool_call_replay.h"

namespace ds4 {

const std::string_view kThinkMaxPrefix =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve "
    "the root cause, rigorously stress-testing your logic against all potential paths, edge cases, "
    "and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, "
    "considered alternative, and rejected hypothesis to ensure absolutely no assumption is left "
    "unchecked.\n\n";

namespace {

constexpr std::string_view kBos = "<｜begin▁of▁sentence｜>";
constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";
constexpr std::string_view kUser = "<｜User｜>";
constexpr std::string_view kAssistant = "<｜Assistant｜>";
constexpr std::string_view kThinkBegin = "<think>";
constexpr std::string_view kThinkEnd = "</think>";

constexpr std::string_view kToolsHead =
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke tools by "
    "writing a \"<｜DSML｜tool_calls>\" block like the following:\n\n"
    "<｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME\">\n"
    "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types "
    "(numbers, booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning "
    "inside <think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n";
constexpr std::string_view kToolsTail =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool "
    "calls.\n";

enum class Role { kSystem, kUser, kAssistant };

struct Part {
  bool tool_result = false;
  std::string_view text;
  std::string_view tool_call_id;
};

// One message after role mapping and merging.
struct Turn {
  static Turn of(Role r) {
    Turn t;
    t.role = r;
    return t;
  }
  Role role = Role::kUser;
  std::string_view content;           // system / assistant
  std::vector<Part> parts;            // user: text and tool-result parts
  std::string_view reasoning;         // assistant
  const std::vector<ToolCall>* calls = nullptr;
  bool has_tools = false;             // system turn carrying the tools section
};

void append_tool_result(std::string_view content, std::string& out) {
  constexpr std::string_view kClose = "</tool_result>";
  out += "<tool_result>";
  for (size_t pos = 0;;) {
    const size_t hit = content.find(kClose, pos);
    if (hit == std::string_view::npos) { out.append(content.substr(pos)); break; }
    out.append(content.substr(pos, hit - pos));
    out += "&lt;";
    out.append(kClose.substr(1));
    pos = hit + kClose.size();
  }
  out += "</tool_result>";
}

// Normalises roles and merges consecutive user/tool messages (the encoder's merge_tool_messages).
bool build_turns(std::span<const ChatMessage> messages, std::vector<Turn>& turns, std::string& error) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool tool = m.role == "tool" || m.role == "function";
    if (m.role == "system" || m.role == "developer") {
      turns.push_back(Turn::of(Role::kSystem));
      turns.back().content = m.content;
    } else if (m.role == "user" || tool) {
      const Part part{tool, m.content, m.tool_call_id};
      if (turns.empty() || turns.back().role != Role::kUser) turns.push_back(Turn::of(Role::kUser));
      turns.back().parts.push_back(part);
    } else if (m.role == "assistant") {
      turns.push_back(Turn::of(Role::kAssistant));
      turns.back().content = m.content;
      turns.back().reasoning = m.reasoning_content;
      turns.back().calls = &m.tool_calls;
    } else {
      error = "messages[" + std::to_string(i) + "]: unknown role \"" + m.role + "\"";
      return false;
    }
  }
  return true;
}

// Orders the tool results of each user turn by the preceding assistant's call order (stable;
// unknown ids sort as the first call, as the encoder's sort_tool_results_by_call_order does).
void sort_tool_results(std::vector<Turn>& turns) {
  std::unordered_map<std::string_view, size_t> order;
  for (Turn& t : turns) {
    if (t.role == Role::kAssistant && t.calls && !t.calls->empty()) {
      order.clear();
      for (size_t i = 0; i < t.calls->size(); ++i)
        if (!(*t.calls)[i].id.empty()) order.emplace((*t.calls)[i].id, i);
      continue;
    }
    if (t.role != Role::kUser || order.empty()) continue;
    std::vector<Part> results;
    for (const Part& p : t.parts)
      if (p.tool_result) results.push_back(p);
    if (results.size() < 2) continue;
    std::stable_sort(results.begin(), results.end(), [&](const Part& a, const Part& b) {
      const auto ia = order.find(a.tool_call_id), ib = order.find(b.tool_call_id);
      return (ia == order.end() ? 0 : ia->second) < (ib == order.end() ? 0 : ib->second);
    });
    size_t next = 0;
    for (Part& p : t.parts)
      if (p.tool_result) p = results[next++];
  }
}

// Parses and re-serialises the tools; false with error on invalid JSON.
bool render_tools(std::span<const std::string> tools, std::string& section, std::string& error) {
  std::vector<std::string> functions;
  for (size_t i = 0; i < tools.size(); ++i) {
    std::string parse_error;
    std::optional<JsonValue> v = parse_json(tools[i], &parse_error);
    if (!v || v->kind != JsonValue::Kind::kObject) {
      error = "tools[" + std::to_string(i) + "]: " + (v ? "not a JSON object" : "invalid JSON: " + parse_error);
      return false;
    }
    const JsonValue* function = &*v;
    for (const auto& [key, member] : v->members)
      if (key == "function" && member.kind == JsonValue::Kind::kObject) function = &member;
    functions.push_back(to_json(*function, JsonStyle::kPython));
  }
  section = render_tools_section(functions);
  return true;
}

std::string render_calls(const std::vector<ToolCall>& calls, ToolCallReplay* replay) {
  if (calls.empty()) return {};
  if (replay) {
    std::vector<std::string> ids;
    for (const ToolCall& c : calls) ids.push_back(c.id);
    if (std::optional<std::string> exact = replay->lookup(ids)) return *exact;
  }
  return render_dsml_tool_calls(calls);
}

struct RenderState {
  bool thinking = false;
  bool drop_thinking = true;
  int last_user = -1;
  std::string_view tools_section;
  ToolCallReplay* replay = nullptr;
};

void render_turn(const std::vector<Turn>& turns, size_t idx, const RenderState& st, std::string& out,
                 std::vector<std::pair<size_t, size_t>>& generated_spans) {
  const Turn& t = turns[idx];
  const bool keep_reasoning = !st.drop_thinking || static_cast<int>(idx) > st.last_user;
  switch (t.role) {
    case Role::kSystem:
      out.append(t.content);
      if (t.has_tools) out.append("\n\n").append(st.tools_section);
      break;
    case Role::kUser:
      out.append(kUser);
      for (size_t i = 0; i < t.parts.size(); ++i) {
        if (i) out.append("\n\n");
        if (t.parts[i].tool_result) append_tool_result(t.parts[i].text, out);
        else out.append(t.parts[i].text);
      }
      break;
    case Role::kAssistant: {
      const size_t begin = out.size();
      if (st.thinking && keep_reasoning) out.append(t.reasoning).append(kThinkEnd);
      out.append(t.content);
      out.append(render_calls(*t.calls, st.replay));
      out.append(kEos);
      // Opened by a user turn's transition (<｜Assistant｜> and <think> or </think>): generated text.
      if (idx > 0 && turns[idx - 1].role == Role::kUser) generated_spans.emplace_back(begin, out.size());
      break;
    }
  }
  // Transition: a user turn followed by an assistant turn or by nothing opens the assistant.
  if (idx + 1 < turns.size() && turns[idx + 1].role != Role::kAssistant) return;
  if (t.role != Role::kUser) return;
  out.append(kAssistant);
  const bool open_thinking = st.thinking && (!st.drop_thinking || static_cast<int>(idx) >= st.last_user);
  out.append(open_thinking ? kThinkBegin : kThinkEnd);
}

}  // namespace

std::optional<ReasoningEffort> parse_reasoning_effort(std::string_view name) {
  if (name == "none") return ReasoningEffort::kNone;
  if (name == "max") return ReasoningEffort::kMax;
  for (std::string_view n : {"minimal", "low", "medium", "high", "xhigh"})
    if (name == n) return ReasoningEffort::kHigh;
  return std::nullopt;
}

std::string render_tools_section(std::span<const std::string> function_json) {
  std::string out(kToolsHead);
  for (size_t i = 0; i < function_json.size(); ++i) {
    if (i) out.push_back('\n');
    out.append(function_json[i]);
  }
  out.append(kToolsTail);
  return out;
}

ChatRenderResult render_chat_prompt(std::span<const ChatMessage> messages,
                                    std::span<const std::string> tools,
                                    const ChatRenderOptions& options) {
  ChatRenderResult r;
  if (messages.empty()) {
    r.error = "messages: at least one message is required";
    return r;
  }
  std::vector<Turn> turns;
  std::string tools_section;
  if (!build_turns(messages, turns, r.error)) return r;
  if (!tools.empty()) {
    if (!render_tools(tools, tools_section, r.error)) return r;
    if (turns.front().role != Role::kSystem) turns.insert(turns.begin(), Turn::of(Role::kSystem));
    turns.front().has_tools = true;
  }
  sort_tool_results(turns);

  r.effort = options.effort;
  if (r.effort == ReasoningEffort::kMax && options.context_tokens < kThinkMaxMinContextTokens)
    r.effort = ReasoningEffort::kHigh;
  r.thinking = r.effort != ReasoningEffort::kNone;

  RenderState st;
  st.thinking = r.thinking;
  st.drop_thinking = tools.empty();
  st.tools_section = tools_section;
  st.replay = options.replay;
  for (size_t i = 0; i < turns.size(); ++i)
    if (turns[i].role == Role::kUser) st.last_user = static_cast<int>(i);

  r.prompt.append(kBos);
  if (r.effort == ReasoningEffort::kMax) r.prompt.append(kThinkMaxPrefix);
  for (size_t i = 0; i < turns.size(); ++i) render_turn(turns, i, st, r.prompt, r.generated_spans);
  r.ok = true;
  return r;
}

}  // namespace ds4
