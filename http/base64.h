// Standard base64 (RFC 4648, with padding) for opaque fields of the agent APIs (the Responses
// API's reasoning encrypted_content carries the reasoning text so a stateless client can send it
// back). decode returns nullopt on any character outside the alphabet or a bad length.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace ds4::http {

std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace ds4::http
