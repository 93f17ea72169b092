// Per-API parse / prepare / writer / error glue and the count_tokens route (see api_dispatch.h).
#include "http/api_dispatch.h"

#include <simdjson.h>

#include "http/anthropic_request.h"
#include "http/anthropic_response.h"
#include "http/json_writer.h"
#include "http/responses_request.h"

namespace ds4::http {

std::optional<GenerationApi> generation_api_of(std::string_view path) {
  if (path == "/v1/chat/completions") return GenerationApi::kChatCompletions;
  if (path == "/v1/completions") return GenerationApi::kCompletions;
  if (path == "/v1/messages") return GenerationApi::kAnthropicMessages;
  if (path == "/v1/responses") return GenerationApi::kResponses;
  return std::nullopt;
}

bool is_anthropic_path(std::string_view path) { return path == "/v1/messages" || path == "/v1/messages/count_tokens"; }

std::optional<ApiError> prepare_for_api(GenerationApi api, std::string_view body, const PrepareContext& ctx,
                                        ApiPrepared& out, std::vector<std::string>& ignored) {
  std::optional<ApiError> error;
  switch (api) {
    case GenerationApi::kChatCompletions: {
      ChatRequest r;
      error = parse_chat_request(body, r);
      if (!error) error = prepare_chat(ctx, r, out.prep);
      ignored = std::move(r.gen.ignored_fields);
      break;
    }
    case GenerationApi::kCompletions: {
      CompletionRequest r;
      error = parse_completion_request(body, r);
      if (!error) error = prepare_completion(ctx, r, out.prep);
      ignored = std::move(r.gen.ignored_fields);
      break;
    }
    case GenerationApi::kAnthropicMessages: {
      AnthropicRequest r;
      error = parse_anthropic_request(body, /*count_tokens=*/false, r);
      if (!error) error = prepare_chat(ctx, r.chat, out.prep);
      out.reasoning_budget = r.thinking_budget.value_or(0);
      ignored = std::move(r.chat.gen.ignored_fields);
      break;
    }
    case GenerationApi::kResponses: {
      ResponsesRequest r;
      error = parse_responses_request(body, r);
      if (!error) error = prepare_chat(ctx, r.chat, out.prep);
      out.echo = std::move(r.echo);
      ignored = std::move(r.chat.gen.ignored_fields);
      break;
    }
  }
  return error;
}

const char* response_id_prefix(GenerationApi api) {
  switch (api) {
    case GenerationApi::kChatCompletions: return "chatcmpl-";
    case GenerationApi::kCompletions: return "cmpl-";
    case GenerationApi::kAnthropicMessages: return "msg_";
    case GenerationApi::kResponses: return "resp_";
  }
  return "";
}

std::unique_ptr<ResponseWriter> make_api_writer(GenerationApi api, const Tokenizer& tokenizer, ApiPrepared& p) {
  switch (api) {
    case GenerationApi::kAnthropicMessages:
      return make_anthropic_writer(tokenizer, p.prep.setup, p.prep.stream_options);
    case GenerationApi::kResponses:
      return make_responses_writer(tokenizer, p.prep.setup, p.prep.stream_options, p.echo);
    case GenerationApi::kChatCompletions:
    case GenerationApi::kCompletions: break;
  }
  return make_openai_writer(tokenizer, p.prep.setup, p.prep.stream_options);
}

Reply api_error_reply(GenerationApi api, const ApiError& error) {
  Reply r = error_reply(error);
  if (api == GenerationApi::kAnthropicMessages) r.body = anthropic_error_body(error);
  return r;
}

Reply reshape_error_for_path(std::string_view path, Reply reply) {
  if (!is_anthropic_path(path) || reply.status < 400 || reply.body.empty()) return reply;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view message;
  if (parser.parse(reply.body).get(doc) || doc["error"]["message"].get(message)) return reply;
  ApiError e;
  e.status = static_cast<int>(reply.status);
  e.message = std::string(message);
  reply.body = anthropic_error_body(e);
  return reply;
}

Reply handle_count_tokens(ModelService& service, const Request& req) {
  const GenerationApi api = GenerationApi::kAnthropicMessages;
  AnthropicRequest ar;
  if (auto e = parse_anthropic_request(req.body(), /*count_tokens=*/true, ar)) return api_error_reply(api, *e);
  const PrepareContext ctx{service.tokenizer(), service.served_name(), service.max_model_len(),
                           service.default_effort(), &service.replay(), 0};
  TokenizeRequest tr;
  tr.model = ar.chat.gen.model;
  tr.chat = true;
  tr.messages = std::move(ar.chat.messages);
  if (ar.chat.tool_choice.kind != ToolChoiceKind::kNone) tr.tools = std::move(ar.chat.tools);
  tr.effort = ar.chat.effort;
  std::vector<int32_t> tokens;
  if (auto e = tokenize_request(ctx, tr, tokens)) return api_error_reply(api, *e);
  JsonWriter w;
  w.begin_object().field("input_tokens", static_cast<int64_t>(tokens.size())).end_object();
  return json_reply(w.take());
}

}  // namespace ds4::http
