// Parsing of Anthropic Messages bodies (POST /v1/messages and /v1/messages/count_tokens) into the
// chat route's ChatRequest: system (string or text blocks) becomes a system message; user content
// (string or text / tool_result blocks) becomes user and tool messages; assistant content
// (thinking, text, tool_use blocks) becomes one assistant message with reasoning, content and tool
// calls (input re-serialised compactly, ids kept for exact replay); tools ({name, description,
// input_schema}) become function tools; tool_choice auto / any / tool / none; max_tokens (required
// for messages), temperature (0..1), top_p, top_k, stop_sequences, stream; thinking
// {"type":"enabled"|"adaptive"|"between_tools"} turns reasoning on (absent or disabled: off, as
// Anthropic's default is), its budget_tokens (>= 1) bounds the reasoning (the generation route
// closes it there: Relay::plan_reasoning_budget). Refused with a clear 400: images, documents,
// server tools, MCP servers, containers, structured output (output_config.format). Unknown
// top-level fields are ignored and listed. Tested by tests/unit/http_agent_request_test.cpp.
#pragma once
#include <optional>
#include <string_view>

#include "http/openai_request.h"

namespace ds4::http {

struct AnthropicRequest {
  ChatRequest chat;                        // chat.effort is always set (thinking on or off)
  std::optional<int64_t> thinking_budget;  // thinking.budget_tokens when given
};

// count_tokens: the /v1/messages/count_tokens body (max_tokens not required).
std::optional<ApiError> parse_anthropic_request(std::string_view body, bool count_tokens, AnthropicRequest& out);

}  // namespace ds4::http
