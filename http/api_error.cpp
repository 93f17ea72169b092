// ApiError constructors and the OpenAI error body (see api_error.h). Types follow OpenAI's names
// (invalid_request_error, authentication_error, not_found_error, server_error) so that the official
// SDKs raise the matching exception class (they dispatch on the status code).
#include "http/api_error.h"

#include "http/json_writer.h"

namespace ds4::http {

namespace {

ApiError make(int status, std::string message, std::string type, std::string param, std::string code,
              int retry_after_seconds = 0) {
  ApiError e;
  e.status = status;
  e.message = std::move(message);
  e.type = std::move(type);
  e.param = std::move(param);
  e.code = std::move(code);
  e.retry_after_seconds = retry_after_seconds;
  return e;
}

}  // namespace

std::string error_body(const ApiError& e) {
  JsonWriter w;
  w.begin_object().key("error").begin_object();
  w.field("message", e.message).field("type", e.type).field_or_null("param", e.param);
  w.field_or_null("code", e.code);
  for (const auto& [name, value] : e.numbers) w.field(name, value);
  w.end_object().end_object();
  return w.take();
}

ApiError invalid_param(std::string param, std::string message) {
  return make(400, std::move(message), "invalid_request_error", std::move(param), "invalid_value");
}

ApiError invalid_json(std::string message) {
  return make(400, std::move(message), "invalid_request_error", "", "invalid_json");
}

ApiError unsupported(std::string param, std::string message) {
  return make(400, std::move(message), "invalid_request_error", std::move(param), "unsupported_value");
}

ApiError model_not_found(const std::string& model) {
  return make(404, "The model `" + model + "` does not exist.", "not_found_error", "model", "model_not_found");
}

ApiError context_length_exceeded(int64_t prompt_tokens, int64_t max_tokens, int64_t max_model_len) {
  ApiError e = make(400,
                    "This model's maximum context length is " + std::to_string(max_model_len) +
                        " tokens. However, you requested " + std::to_string(max_tokens) +
                        " output tokens and your prompt contains " + std::to_string(prompt_tokens) +
                        " input tokens, for a total of " + std::to_string(prompt_tokens + max_tokens) + " tokens.",
                    "invalid_request_error", "messages", "context_length_exceeded");
  e.numbers = {{"n_prompt_tokens", prompt_tokens}, {"n_max_tokens", max_tokens}, {"n_ctx", max_model_len}};
  return e;
}

ApiError unauthorized(std::string message) {
  return make(401, std::move(message), "authentication_error", "", "invalid_api_key");
}

ApiError route_not_found(const std::string& method, const std::string& target) {
  return make(404, "No route for " + method + " " + target, "not_found_error", "", "not_found");
}

ApiError method_not_allowed(const std::string& method, const std::string& target) {
  return make(405, "Method " + method + " is not allowed on " + target, "invalid_request_error", "",
              "method_not_allowed");
}

ApiError body_too_large(uint64_t limit_bytes) {
  return make(413, "Request body is larger than the limit of " + std::to_string(limit_bytes) +
                                            " bytes", "invalid_request_error", "", "request_too_large");
}

ApiError unavailable(std::string message, std::string code, int retry_after_seconds) {
  return make(503, std::move(message), "unavailable_error", "", std::move(code), retry_after_seconds);
}

ApiError internal_error(std::string message) {
  return make(500, std::move(message), "server_error", "", "internal_error");
}

}  // namespace ds4::http
