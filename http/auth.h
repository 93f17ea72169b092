// API-key authentication and CORS decisions, free of any HTTP library so they can be unit tested.
// Key comparison takes time independent of where the keys differ (every byte of every configured
// key is visited), so timing does not reveal a key prefix. Called by the session for each request.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ds4::http {

// The key presented by a request: "Authorization: Bearer K" (scheme case-insensitive) or, when
// that header is absent, "x-api-key: K". nullopt when neither is present.
std::optional<std::string_view> presented_api_key(std::string_view authorization, std::string_view x_api_key);

// Constant-time equality (time depends only on the lengths).
bool constant_time_equal(std::string_view a, std::string_view b);
// True when keys is empty (no auth) or key matches one of them (all are compared).
bool api_key_allowed(const std::vector<std::string>& keys, std::optional<std::string_view> key);

// Access-Control-Allow-Origin for a request with this Origin header ("" -> send none).
std::string cors_allow_origin(const std::vector<std::string>& allowed, std::string_view origin);

}  // namespace ds4::http
