// The generation APIs the server speaks, and which path serves which. The route layer
// (session.cpp) picks one per request; api_dispatch.h parses, prepares and formats by it.
#pragma once
#include <optional>
#include <string_view>

namespace ds4::http {

enum class GenerationApi {
  kChatCompletions,    // POST /v1/chat/completions (OpenAI)
  kCompletions,        // POST /v1/completions (OpenAI)
  kAnthropicMessages,  // POST /v1/messages (Anthropic)
  kResponses,          // POST /v1/responses (OpenAI Responses, stateless)
};

// The API a generation path serves; nullopt for other paths.
std::optional<GenerationApi> generation_api_of(std::string_view path);
// Anthropic's paths (/v1/messages, /v1/messages/count_tokens): their errors use Anthropic's shape.
bool is_anthropic_path(std::string_view path);

}  // namespace ds4::http
