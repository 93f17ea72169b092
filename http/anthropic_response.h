// The Anthropic Messages response (POST /v1/messages): AnthropicWriter formats one generation as a
// message object, or streams it as Anthropic's documented event sequence: message_start; per
// content block content_block_start, content_block_delta* (text_delta / thinking_delta, a
// signature_delta closing a thinking block, input_json_delta), content_block_stop; message_delta
// (stop_reason, stop_sequence, cumulative usage); message_stop. Blocks follow the model's order
// (thinking, text, tool_use). Usage follows Anthropic's split: input_tokens are the prompt tokens
// not read from the prefix cache, cache_read_input_tokens those that were. Errors use Anthropic's
// shape {"type":"error","error":{"type","message"}}. Used by the generation route.
#pragma once
#include <memory>
#include <string>

#include "http/block_writer.h"

namespace ds4::http {

// "invalid_request_error", "authentication_error", "not_found_error", ... for an HTTP status.
const char* anthropic_error_type(int status);
std::string anthropic_error_body(const ApiError& error);

// setup.id is the message id (msg_...); setup.model the served name; setup.prompt_tokens the count.
std::unique_ptr<ResponseWriter> make_anthropic_writer(const Tokenizer& tokenizer, ResponseSetup setup,
                                                      AssistantStreamOptions options);

}  // namespace ds4::http
