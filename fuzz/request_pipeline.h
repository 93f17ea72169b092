// The server's request path after the HTTP framing, as the fuzz targets drive it: parse and
// validate a JSON body for one endpoint (http/openai_request.cpp), then prepare it (chat template,
// tokenizer, limits: http/generation_prepare.cpp) against the shipped tokenizer. Checks that every
// refusal is a well-formed OpenAI error (4xx, a JSON body) and that an accepted request satisfies
// what the engine relies on (non-empty prompt of valid ids, 1 <= max_tokens, prompt + max_tokens
// within the context, sane sampling values). Used by openai_request_fuzz and http_request_fuzz.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include <simdjson.h>

#include "engine/tool_call_replay.h"
#include "fuzz/fuzz_support.h"
#include "http/generation_prepare.h"
#include "http/openai_request.h"

namespace ds4::fuzz {

enum class Endpoint { kChat, kCompletions, kTokenize, kDetokenize };
inline constexpr int64_t kFuzzContextTokens = 4096;

inline void check_error(const http::ApiError& e) {
  if (e.status < 400 || e.status > 499) fail("a request error that is not a 4xx", e.message);
  if (e.message.empty()) fail("an error without a message");
  const std::string body = http::error_body(e);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(body).get(root) != simdjson::SUCCESS) fail("error body is not JSON", body);
  std::string_view message;
  if (root["error"]["message"].get_string().get(message) != simdjson::SUCCESS) fail("error body has no message", body);
}

inline void check_prepared(const Tokenizer& tok, const http::PreparedGeneration& p) {
  const GenerationRequest& r = p.request;
  if (r.prompt_tokens.empty()) fail("accepted request with an empty prompt");
  if (tok.find_invalid_id(r.prompt_tokens)) fail("accepted prompt holds an invalid token id");
  if (r.max_tokens < 1) fail("accepted max_tokens < 1");
  if (int64_t(r.prompt_tokens.size()) > kFuzzContextTokens - r.max_tokens) fail("prompt + max_tokens exceed the context");
  const SamplingParams& s = r.sampling;
  if (!std::isfinite(s.temperature) || !(s.top_p > 0 && s.top_p <= 1) || !(s.min_p >= 0 && s.min_p <= 1) || s.top_k < 0)
    fail("accepted sampling values out of range");
  if (tok.find_invalid_id(r.stop_token_ids)) fail("accepted stop_token_ids hold an invalid id");
}

inline http::PrepareContext fuzz_prepare_context(ToolCallReplay& replay) {
  return http::PrepareContext{shipped_tokenizer(), "ds4", kFuzzContextTokens, ReasoningEffort::kHigh, &replay, 1};
}

// Runs one body through parsing and preparation for the endpoint and checks the outcome.
inline void run_request(Endpoint endpoint, std::string_view body) {
  ToolCallReplay replay;
  const http::PrepareContext ctx = fuzz_prepare_context(replay);
  std::optional<http::ApiError> error;
  http::PreparedGeneration prepared;
  if (endpoint == Endpoint::kChat) {
    http::ChatRequest req;
    error = http::parse_chat_request(body, req);
    if (!error) error = http::prepare_chat(ctx, req, prepared);
    if (!error) check_prepared(ctx.tokenizer, prepared);
  } else if (endpoint == Endpoint::kCompletions) {
    http::CompletionRequest req;
    error = http::parse_completion_request(body, req);
    if (!error) error = http::prepare_completion(ctx, req, prepared);
    if (!error) check_prepared(ctx.tokenizer, prepared);
  } else if (endpoint == Endpoint::kTokenize) {
    http::TokenizeRequest req;
    std::vector<int32_t> tokens;
    error = http::parse_tokenize_request(body, req);
    if (!error) error = http::tokenize_request(ctx, req, tokens);
    if (!error && ctx.tokenizer.find_invalid_id(tokens)) fail("/tokenize produced an invalid id");
  } else {
    http::DetokenizeRequest req;
    error = http::parse_detokenize_request(body, req);
    if (!error && !ctx.tokenizer.find_invalid_id(req.tokens)) (void)ctx.tokenizer.decode(req.tokens);
  }
  if (error) check_error(*error);
}

}  // namespace ds4::fuzz
