// Parsing of OpenAI Responses bodies (POST /v1/responses, stateless) into the chat route's
// ChatRequest plus the fields a response echoes: input as a string or a list of items (messages
// with input_text / output_text parts, function_call, function_call_output, reasoning with
// reasoning_text content or the encrypted_content this server wrote), instructions (a leading
// system message), function tools, tool_choice, max_output_tokens, temperature, top_p,
// reasoning.effort, stream, include, metadata. Items of one assistant turn (reasoning, message,
// function calls) merge into one assistant message so it renders as the model wrote it.
// previous_response_id, conversation, background and item_reference are refused with a 400 that
// says the server keeps no state; non-function tools, images, files and structured output are
// refused as unsupported. Tested by tests/unit/http_agent_request_test.cpp.
#pragma once
#include <optional>
#include <string_view>

#include "http/openai_request.h"
#include "http/responses_response.h"

namespace ds4::http {

struct ResponsesRequest {
  ChatRequest chat;
  ResponsesEcho echo;
};

std::optional<ApiError> parse_responses_request(std::string_view body, ResponsesRequest& out);

}  // namespace ds4::http
