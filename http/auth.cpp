// API keys and CORS (see auth.h).
#include "http/auth.h"

#include <algorithm>
#include <cctype>

namespace ds4::http {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

std::optional<std::string_view> presented_api_key(std::string_view authorization, std::string_view x_api_key) {
  authorization = trim(authorization);
  if (!authorization.empty()) {
    const size_t space = authorization.find(' ');
    if (space == std::string_view::npos || !iequals(authorization.substr(0, space), "bearer")) return std::string_view{};
    return trim(authorization.substr(space + 1));
  }
  x_api_key = trim(x_api_key);
  if (!x_api_key.empty()) return x_api_key;
  return std::nullopt;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Visit max(len) bytes whatever the contents; a length difference also makes it unequal.
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = static_cast<unsigned>(a.size() ^ b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

bool api_key_allowed(const std::vector<std::string>& keys, std::optional<std::string_view> key) {
  if (keys.empty()) return true;
  if (!key || key->empty()) return false;
  bool ok = false;
  for (const std::string& k : keys) ok |= constant_time_equal(k, *key);  // no early exit
  return ok;
}

std::string cors_allow_origin(const std::vector<std::string>& allowed, std::string_view origin) {
  if (allowed.empty() || origin.empty()) return "";
  for (const std::string& a : allowed) {
    if (a == "*") return "*";
    if (a == origin) return std::string(origin);
  }
  return "";
}

}  // namespace ds4::http
