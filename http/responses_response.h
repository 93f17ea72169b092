// The OpenAI Responses response (POST /v1/responses, stateless): ResponsesWriter formats one
// generation as a response object, or streams it as the documented event sequence, every event
// with its sequence_number: response.created, response.in_progress; per output item
// response.output_item.added, then for a reasoning item content_part.added, reasoning_text.delta*,
// reasoning_text.done, content_part.done; for a message content_part.added, output_text.delta*,
// output_text.done, content_part.done; for a function call function_call_arguments.delta*,
// function_call_arguments.done; then response.output_item.done; and last response.completed, or
// response.incomplete (max_output_tokens) or response.failed (an engine error or abort). Items
// keep the model's order (reasoning, message, function calls). usage reports
// input_tokens_details.cached_tokens (prefix-cache hits) and output_tokens_details.reasoning_tokens.
// Errors before the stream use the OpenAI error shape. Used by the generation route.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "http/block_writer.h"

namespace ds4::http {

// Request fields a response object echoes back.
struct ResponsesEcho {
  std::optional<std::string> instructions;
  std::string tools_json = "[]";             // the request's tools, as sent (minified)
  std::string tool_choice_json = "\"auto\"";
  std::optional<int64_t> max_output_tokens;
  double temperature = 1.0, top_p = 1.0;
  std::string effort;                        // reasoning.effort as given ("" -> null)
  std::string metadata_json = "{}";
  bool store = false;                        // always reported false: nothing is stored
  bool encrypted_reasoning = false;          // include has "reasoning.encrypted_content"
};

// setup.id is the response id (resp_...); item ids derive from it.
std::unique_ptr<ResponseWriter> make_responses_writer(const Tokenizer& tokenizer, ResponseSetup setup,
                                                      AssistantStreamOptions options, ResponsesEcho echo);

}  // namespace ds4::http
