// From a parsed chat / completion request to what the engine and the response builder need: the
// rendered and tokenized prompt (chat template, tool definitions, a forced tool-call opening for
// tool_choice required / named), the sampling parameters and limits (max_tokens defaults to the rest
// of the context; prompt + max_tokens over the context is context_length_exceeded), and the
// response setup. Pure functions of the request and a PrepareContext (no engine, no I/O), called by
// the generation route and tested by tests/unit/http_prepare_test.cpp.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "engine/tool_call_replay.h"
#include "http/openai_request.h"
#include "http/request_limits.h"
#include "http/response_builder.h"
#include "scheduler/engine_api.h"

namespace ds4::http {

struct PrepareContext {
  const Tokenizer& tokenizer;
  std::string served_name;
  int64_t max_model_len = 0;
  ReasoningEffort default_effort = ReasoningEffort::kHigh;
  ToolCallReplay* replay = nullptr;
  uint64_t fresh_seed = 0;  // the seed of a request that gives none
  RequestLimits limits{};   // the server's per-request limits (prepare_* refuse what breaks them)
};

struct PreparedGeneration {
  GenerationRequest request;              // prompt tokens (forced opening included), sampling, limits
  ResponseSetup setup;                    // id / created are filled by the route
  AssistantStreamOptions stream_options;  // thinking, stop strings, tool-call parsing
  std::vector<int32_t> forced_tokens;     // tail of the prompt written on the assistant's behalf
  // tool_choice names a function without parameters: the call is fully determined, the forced
  // tokens hold the whole call and the turn ends there (nothing is sampled).
  bool complete_without_generation = false;
};

// 404 when `model` is given and is not the served name.
std::optional<ApiError> check_model(const PrepareContext& ctx, const std::string& model);

std::optional<ApiError> prepare_chat(const PrepareContext& ctx, const ChatRequest& req, PreparedGeneration& out);
std::optional<ApiError> prepare_completion(const PrepareContext& ctx, const CompletionRequest& req,
                                           PreparedGeneration& out);

// The prompt of a /tokenize request (chat template or raw text) as token ids.
std::optional<ApiError> tokenize_request(const PrepareContext& ctx, const TokenizeRequest& req,
                                         std::vector<int32_t>& tokens);

// The DSML text that opens a tool call: the whole block opening plus, when name is given, the
// invoke tag of that function (the model continues with its parameters); without a name, the
// model continues with the function name. Derived from engine/dsml's renderer.
std::string forced_tool_call_opening(const std::string& name);
// What the prompt continues with when tool_choice forces a call ("" when it does not): the
// opening above, or the whole call of a named function that takes no arguments (then
// complete_without_generation is set).
std::string forced_tool_call_text(const ChatRequest& req, bool thinking, bool& complete);

}  // namespace ds4::http
