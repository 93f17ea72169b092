// Pieces of request parsing shared between openai_request.cpp and openai_chat_request.cpp: the
// common generation fields, chat messages, tools and the reasoning switches. Internal to http/.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/json_fields.h"
#include "http/openai_request.h"

namespace ds4::http {

constexpr int64_t kMaxTopLogprobsParam = 20;

// One top-level field of GenerationFields; handled = false when the key is not one of them.
MaybeError read_generation_field(std::string_view key, const Element& v, GenerationFields& g, bool& handled);
// Cross-field checks once every field is read.
MaybeError finish_generation_fields(const simdjson::dom::object& obj, GenerationFields& g);

MaybeError read_messages(const Element& v, std::vector<ChatMessage>& out);
// tools: JSON text of each tool, its function name, and whether its parameters declare properties.
MaybeError read_tools(const Element& v, std::vector<std::string>& tools, std::vector<std::string>& names,
                      std::vector<bool>& takes_arguments);
// reasoning_effort, thinking, chat_template_kwargs, reasoning, include_reasoning (when the pointer
// is given). handled = false for other keys.
MaybeError read_reasoning_switch(std::string_view key, const Element& v, std::optional<ReasoningEffort>& effort,
                                 bool* include_reasoning, bool& handled);

}  // namespace ds4::http
