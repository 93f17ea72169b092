// ApiError: an expected failure of an HTTP request, as a value: the status and the OpenAI error
// body {"error":{"message","type","param","code"}} (plus llama.cpp-style numeric fields for a context
// overflow, which many clients read). Built by request parsing, validation, auth and the routes;
// serialised once by the server. Messages name the parameter and the problem.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ds4::http {

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the offending request field ("" -> null)
  std::string code;   // machine-readable code ("" -> null)
  std::vector<std::pair<std::string, int64_t>> numbers;  // extra numeric members of "error"
  int retry_after_seconds = 0;  // > 0: sent as Retry-After (503)
};

// {"error":{...}} for the error.
std::string error_body(const ApiError& error);

// 400: a request field is missing, mistyped or out of range.
ApiError invalid_param(std::string param, std::string message);
// 400: the body is not JSON, or not the expected top-level shape.
ApiError invalid_json(std::string message);
// 400: a field value this server does not implement (e.g. n > 1).
ApiError unsupported(std::string param, std::string message);
// 404: the model field names another model.
ApiError model_not_found(const std::string& model);
// 400 context_length_exceeded with the token counts.
ApiError context_length_exceeded(int64_t prompt_tokens, int64_t max_tokens, int64_t max_model_len);
// 401.
ApiError unauthorized(std::string message);
// 404 for a path, 405 for a method.
ApiError route_not_found(const std::string& method, const std::string& target);
ApiError method_not_allowed(const std::string& method, const std::string& target);
// 413.
ApiError body_too_large(uint64_t limit_bytes);
// 503 with Retry-After (loading, draining, queue full).
ApiError unavailable(std::string message, std::string code, int retry_after_seconds);
// 500.
ApiError internal_error(std::string message);

}  // namespace ds4::http
