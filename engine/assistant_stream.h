// The HTTP side's view of one generation: token ids in, a single ordered event stream out
// (reasoning deltas, content deltas, tool call start / argument deltas / end, warnings) and the
// final assistant message. Composes StreamingDetokenizer (UTF-8, <think> split, stop strings) and
// DsmlStreamParser (tool calls, content channel only, so nothing inside reasoning is parsed).
// One per request; not thread-safe.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/detokenizer.h"
#include "engine/dsml.h"

namespace ds4 {

struct AssistantStreamOptions {
  bool thinking = false;           // the prompt ended with <think>
  std::vector<std::string> stop;   // stop strings (see DetokenizerOptions)
  bool stop_in_reasoning = false;
  bool parse_tool_calls = false;   // the request defined tools: parse DSML in the content
  uint64_t tool_id_seed = 0;       // makes generated tool call ids unique per request
};

struct AssistantEvent {
  enum class Kind { kReasoning, kContent, kToolCallStart, kToolCallArguments, kToolCallEnd, kWarning };
  Kind kind = Kind::kContent;
  int index = -1;   // tool call events: index of the call in this message
  std::string id;   // kToolCallStart: the tool call id
  std::string text; // delta text, tool name (start), or warning message
};

struct AssistantMessage {
  std::string reasoning;
  std::string content;
  std::vector<ToolCall> tool_calls;
  std::string raw_dsml;  // exact sampled block for ToolCallReplay (see ParsedAssistantOutput)
  std::vector<std::string> warnings;
  bool stopped_by_string = false;
  int stop_index = -1;
};

class AssistantStream {
 public:
  AssistantStream(const Tokenizer& tokenizer, AssistantStreamOptions options);

  // One generated token (EOS included: it adds no text; call finish() after it).
  void push(int32_t id, std::vector<AssistantEvent>& events);
  // End of generation (EOS, length limit or stop): flushes everything held back.
  void finish(std::vector<AssistantEvent>& events);
  // A stop string matched: the caller should end the generation and call finish().
  bool stopped() const { return detok_.stopped(); }
  const AssistantMessage& message() const { return message_; }

 private:
  void forward(const DetokenizerOutput& out, bool final, std::vector<AssistantEvent>& events);
  void forward_dsml(std::vector<DsmlEvent>& dsml, std::vector<AssistantEvent>& events);

  StreamingDetokenizer detok_;
  DsmlStreamParser dsml_;
  bool parse_tool_calls_;
  bool finished_ = false;
  AssistantMessage message_;
};

}  // namespace ds4
