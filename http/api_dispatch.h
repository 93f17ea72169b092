// Per-API glue of the generation route: parse and prepare a body of any GenerationApi into the
// one engine request (every API goes through prepare_chat / prepare_completion, so rendering,
// tokenizing with exact replay, limits and sampling are shared), make the API's ResponseWriter,
// name its response ids, and shape its errors (OpenAI's for the OpenAI APIs, Anthropic's for
// /v1/messages). Also the /v1/messages/count_tokens route. Called by generation_route.cpp and
// session.cpp.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/generation_api.h"
#include "http/generation_prepare.h"
#include "http/response_writer.h"
#include "http/responses_response.h"
#include "http/session.h"

namespace ds4::http {

struct ApiPrepared {
  PreparedGeneration prep;
  ResponsesEcho echo;  // kResponses: request fields the response repeats
  int64_t reasoning_budget = 0;  // kAnthropicMessages: thinking.budget_tokens (0: none)
};

// Parses body as `api` and prepares it; `ignored` receives unknown top-level fields.
std::optional<ApiError> prepare_for_api(GenerationApi api, std::string_view body, const PrepareContext& ctx,
                                        ApiPrepared& out, std::vector<std::string>& ignored);
// "chatcmpl-", "cmpl-", "msg_", "resp_".
const char* response_id_prefix(GenerationApi api);
// The writer for a prepared request (its setup.id and created already filled in).
std::unique_ptr<ResponseWriter> make_api_writer(GenerationApi api, const Tokenizer& tokenizer, ApiPrepared& prepared);
// An error reply in the API's shape.
Reply api_error_reply(GenerationApi api, const ApiError& error);
// A reply of the routing layer (auth, 404, 405, 503) for `path`: an OpenAI-shaped error body is
// rewritten in Anthropic's shape on Anthropic's paths; anything else is returned unchanged.
Reply reshape_error_for_path(std::string_view path, Reply reply);

// POST /v1/messages/count_tokens: {"input_tokens": N} for the prompt the same body would render.
Reply handle_count_tokens(ModelService& service, const Request& req);

}  // namespace ds4::http
