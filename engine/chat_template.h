// Renders an OpenAI-style conversation into the DeepSeek V4 prompt text, following DeepSeek's
// official encoder (encoding_dsv4.py, the one shipped with V4-Flash) and the request glue of
// vLLM's deepseek_v4 tokenizer: BOS; [Think-Max prefix]; messages in order; tool definitions
// appended to the leading system message ("{content}\n\n## Tools..."; a system message is
// inserted when there is none); consecutive user/tool messages merged into one user turn whose
// parts are joined by "\n\n", tool results sorted by the preceding assistant's call order;
// earlier reasoning dropped unless tools are defined; generation opened with <｜Assistant｜> and
// <think> (thinking) or </think> (non-thinking). Deliberate differences from the encoder:
// "developer" is treated as "system" (OpenAI clients use it that way; the official encoder's
// developer role belongs to DeepSeek's search agent), the exact substring </tool_result> inside a
// tool result is escaped as &lt;/tool_result>, and empty tool arguments render no parameters.
// The text is tokenized with Tokenizer::encode(text, /*parse_special=*/true). Used by HTTP.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/dsml.h"

namespace ds4 {

class ToolCallReplay;

struct ChatMessage {
  std::string role;  // system | developer | user | assistant | tool | function
  std::string content;
  std::string reasoning_content;     // assistant only
  std::vector<ToolCall> tool_calls;  // assistant only; arguments as JSON text
  std::string tool_call_id;          // tool only: which call this result answers
  std::string name;                  // accepted, not rendered (the official encoder ignores it)
};

enum class ReasoningEffort {
  kNone,  // non-thinking: generation opens with </think>
  kHigh,  // thinking (the server default)
  kMax,   // thinking with the Think-Max prefix, when the context allows it
};
// "none" -> kNone; "minimal", "low", "medium", "high", "xhigh" -> kHigh; "max" -> kMax.
std::optional<ReasoningEffort> parse_reasoning_effort(std::string_view name);

// DeepSeek recommends Think Max only with a context of at least 384K tokens; below, max acts as high.
inline constexpr int64_t kThinkMaxMinContextTokens = 393216;
extern const std::string_view kThinkMaxPrefix;  // the official REASONING_EFFORT_MAX text

struct ChatRenderOptions {
  ReasoningEffort effort = ReasoningEffort::kHigh;
  int64_t context_tokens = 0;        // context size available to the request
  ToolCallReplay* replay = nullptr;  // exact DSML of earlier generated calls, if any
};

struct ChatRenderResult {
  bool ok = false;
  std::string prompt;  // when ok
  std::string error;   // when not ok: names the message or tool at fault
  bool thinking = false;
  ReasoningEffort effort = ReasoningEffort::kHigh;  // effective (max falls back to high)
  // Byte ranges [begin, end) of prompt holding earlier assistant turns exactly as the model would
  // have generated them: from after the <think> / </think> that opened the turn through its EOS.
  // Each starts right after and ends with a special token, so tokenizing the prompt piecewise at
  // these bounds gives the same ids as tokenizing it whole (see engine/prompt_tokens.h).
  std::vector<std::pair<size_t, size_t>> generated_spans;
};

// tools: one JSON text per tool, either the function object ({"name":...,"parameters":...}) or
// the OpenAI wrapper ({"type":"function","function":{...}}); re-serialised as Python json.dumps.
ChatRenderResult render_chat_prompt(std::span<const ChatMessage> messages,
                                    std::span<const std::string> tools,
                                    const ChatRenderOptions& options);

// The "## Tools" section for these function schemas (already serialised, one per line).
std::string render_tools_section(std::span<const std::string> function_json);

}  // namespace ds4
