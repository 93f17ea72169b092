// Pieces the Anthropic Messages and OpenAI Responses request parsers share: the function-tool
// JSON the chat template reads, and the checks of tool_choice against the tool list. Both parsers
// produce a ChatRequest, so everything after parsing (rendering, tokenizing, limits, sampling) is
// the chat route's (generation_prepare.h). Internal to http/.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/json_fields.h"
#include "http/openai_request.h"

namespace ds4::http {

// Adds one function tool to req (the OpenAI wrapper {"type":"function","function":{name,
// description, parameters}} the chat template renders; parameters is a minified JSON object or
// empty). `param` names the tool in errors.
MaybeError add_function_tool(ChatRequest& req, const std::string& param, std::string_view name,
                             std::optional<std::string_view> description, const Element* parameters);

// tool_choice kinds that need tools, and a named function that must be one of them.
MaybeError check_tool_choice(const ChatRequest& req, const std::string& param);

// A message with only a role and content.
inline ChatMessage chat_message(std::string role, std::string content = {}) {
  ChatMessage m;
  m.role = std::move(role);
  m.content = std::move(content);
  return m;
}

// How one API spells its text parts, for append_text_parts: the array's description and the item's
// name in errors ("an array of text blocks", "block"), the member holding a part's text for its
// type (null: the API does not take that type), and the error for such a type.
struct TextPartRules {
  const char* array_desc;
  const char* item;
  const char* (*text_key)(std::string_view type);
  MaybeError (*refuse)(const std::string& param, std::string_view type);
};

// A string, or an array of typed text parts whose texts are joined by `sep`, appended to out.
MaybeError append_text_parts(const Element& v, const std::string& param, std::string_view sep,
                             const TextPartRules& rules, std::string& out);

// "param[i]".
inline std::string indexed(const std::string& param, size_t i) { return param + "[" + std::to_string(i) + "]"; }

}  // namespace ds4::http
