// The OpenAI request bodies this server accepts, parsed (simdjson) and validated into plain structs
// at the edge: nothing JSON goes further. Every problem is an ApiError naming the parameter; null
// means "not given"; unknown fields are accepted and listed in ignored_fields (the server logs them
// once). Supported fields are in the issue / SERVING.md 2.2; fields whose non-default value this
// server does not implement (n > 1, penalties, logit_bias, response_format json) are refused.
// Called by the HTTP routes; tested by tests/unit/http_request_test.cpp.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/chat_template.h"
#include "engine/sampler.h"
#include "http/api_error.h"

namespace ds4::http {

// Fields common to /v1/chat/completions and /v1/completions.
struct GenerationFields {
  std::string model;                    // "" when not given
  SamplingParams sampling;              // OpenAI defaults: temperature 1, top_p 1
  bool seed_given = false;              // else the server draws a seed
  std::optional<int64_t> max_tokens;    // max_tokens / max_completion_tokens, >= 1
  std::vector<std::string> stop;        // stop strings (not included in the output)
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool stream = false;
  bool include_usage = false;           // stream_options.include_usage
  bool continuous_usage = false;        // stream_options.continuous_usage_stats
  bool logprobs = false;
  int top_logprobs = 0;                 // 0..20
  bool return_token_ids = false;        // vLLM extension: token ids per choice / chunk
  int priority = 0;
  std::vector<std::string> ignored_fields;  // unknown top-level fields
  // The request's own names of the fields above, for errors about them (limits are checked after
  // parsing): max_completion_tokens / max_output_tokens, stop_sequences.
  std::string max_tokens_name = "max_tokens";
  std::string stop_name = "stop";
};

enum class ToolChoiceKind { kAuto, kNone, kRequired, kNamed };
struct ToolChoice {
  ToolChoiceKind kind = ToolChoiceKind::kAuto;
  std::string name;  // kNamed
};

struct ChatRequest {
  GenerationFields gen;
  std::vector<ChatMessage> messages;
  std::vector<std::string> tools;       // one JSON text per tool (the OpenAI wrapper object)
  std::vector<std::string> tool_names;  // parallel to tools
  std::vector<bool> tool_takes_arguments;  // parallel to tools: parameters declare properties
  ToolChoice tool_choice;
  std::optional<ReasoningEffort> effort;  // reasoning_effort / thinking switches; unset: server default
  bool include_reasoning = true;          // false: reasoning is generated but not returned
};

struct CompletionRequest {
  GenerationFields gen;
  bool prompt_is_tokens = false;
  std::string prompt_text;
  std::vector<int32_t> prompt_tokens;
  bool echo = false;
  bool add_special_tokens = true;  // prepend BOS to a text prompt (vLLM's default)
};

struct TokenizeRequest {
  std::string model;
  bool chat = false;  // messages given (rendered with the chat template), else prompt
  std::string prompt;
  std::vector<ChatMessage> messages;
  std::vector<std::string> tools;
  std::optional<ReasoningEffort> effort;
  bool add_special_tokens = true;
  bool add_generation_prompt = true;
  bool return_token_strs = false;
};

struct DetokenizeRequest {
  std::string model;
  std::vector<int32_t> tokens;
};

// Each returns the first problem found, or nullopt with `out` filled.
std::optional<ApiError> parse_chat_request(std::string_view body, ChatRequest& out);
std::optional<ApiError> parse_completion_request(std::string_view body, CompletionRequest& out);
std::optional<ApiError> parse_tokenize_request(std::string_view body, TokenizeRequest& out);
std::optional<ApiError> parse_detokenize_request(std::string_view body, DetokenizeRequest& out);

}  // namespace ds4::http
