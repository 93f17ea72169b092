// DSML, the markup DeepSeek V4 writes tool calls in (MODEL.md 6.5):
//   \n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="N">\n<｜DSML｜parameter name="K" string="true">V</｜DSML｜parameter>
//   \n</｜DSML｜invoke>\n</｜DSML｜tool_calls>
// Rendering (history -> prompt) follows DeepSeek's encoding_dsv4.py byte for byte: strings raw
// (string="true"), other values as Python json.dumps (string="false"), parameters and invokes
// joined by "\n". Parsing (generated text -> OpenAI tool_calls) is incremental: DsmlStreamParser
// is fed content deltas and emits content, tool-call start (name as soon as the invoke tag is
// complete), argument JSON deltas and end events; a malformed or unterminated block becomes plain
// text (kFallbackText + kWarning). Used by engine/chat_template.cpp and the HTTP layer.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ds4 {

struct ToolCall {
  std::string id;         // "call_" + 32 hex when generated here
  std::string name;
  std::string arguments;  // JSON text (an object when parsed from DSML)
};

// The canonical block for calls, including the leading "\n\n" (empty string for no calls).
// Arguments that are not a JSON object become one string parameter "arguments" holding the text;
// empty arguments mean no parameters. Two escapes keep parse(render(x)) == x where the official
// encoder would produce ambiguous text: a literal </｜DSML｜parameter> inside a string value is
// written &lt;/｜DSML｜parameter> (inside a JSON value, \u003c/｜DSML｜parameter>), and in a name
// attribute " becomes &quot; and an & that starts an entity becomes &amp;.
std::string render_dsml_tool_calls(const std::vector<ToolCall>& calls);

struct DsmlEvent {
  enum class Kind {
    kContent,            // text: a content delta
    kToolCallStart,      // index, id, text = the tool name
    kToolCallArguments,  // index, text = a JSON delta; the deltas of one call concatenate to its arguments
    kToolCallEnd,        // index
    kFallbackText,       // text: raw text of a malformed or unterminated block, to show as content
    kWarning,            // text: what was wrong (for the log)
  };
  Kind kind = Kind::kContent;
  int index = -1;  // tool call index within the message
  std::string id;
  std::string text;
};

struct ParsedAssistantOutput {
  std::string content;               // every content and fallback delta, concatenated
  std::vector<ToolCall> tool_calls;  // calls of blocks that closed correctly
  // Exact text from the end of content to the end of the tool block, when the output held exactly
  // one well-formed block followed by nothing but whitespace: content + raw_dsml is what the model
  // wrote. Empty otherwise. This is what exact replay re-renders.
  std::string raw_dsml;
  std::vector<std::string> warnings;
};

class DsmlStreamParser {
 public:
  // id_seed makes the generated tool call ids ("call_" + 32 hex) deterministic per request.
  explicit DsmlStreamParser(uint64_t id_seed);

  // Feeds the next content text (complete UTF-8, reasoning already split off).
  void feed(std::string_view text, std::vector<DsmlEvent>& events);
  // End of generation: flushes held text; an unterminated block falls back to text.
  void finish(std::vector<DsmlEvent>& events);
  const ParsedAssistantOutput& result() const { return result_; }

 private:
  enum class State { kContent, kBlock, kInvoke, kStringBody, kJsonBody, kUntypedBody, kNested };
  enum class Step { kProgress, kNeedMore, kMalformed };

  Step step(std::vector<DsmlEvent>& events);
  Step step_content(std::vector<DsmlEvent>& events);
  Step step_block(std::vector<DsmlEvent>& events);
  Step step_invoke(std::vector<DsmlEvent>& events);
  Step step_string_body(std::vector<DsmlEvent>& events);
  Step step_json_body(std::vector<DsmlEvent>& events);
  Step step_untyped_body(std::vector<DsmlEvent>& events);
  Step step_nested(std::vector<DsmlEvent>& events);
  Step start_parameter(std::string_view tag, std::vector<DsmlEvent>& events);
  void run(std::vector<DsmlEvent>& events);
  void consume(size_t n);
  size_t find_from_scanned(std::string_view needle, size_t min_pos);
  void emit_content(std::string_view text, std::vector<DsmlEvent>& events);
  void emit_arguments(std::string_view json, std::vector<DsmlEvent>& events);
  void begin_member(std::vector<DsmlEvent>& events);
  void fall_back(std::string_view reason, std::vector<DsmlEvent>& events);
  std::string next_id();

  State state_ = State::kContent;
  std::string buf_;           // unconsumed input
  std::string raw_;           // consumed text of the current block, from its separator
  std::string error_;         // why the current step is malformed
  size_t scanned_ = 0;        // buf_ bytes already searched for the current closing tag
  size_t block_first_call_ = 0;
  int call_index_ = -1;       // event index of the open invoke
  int next_call_index_ = 0;   // event indices never repeat, even after a fallback
  int blocks_closed_ = 0;
  bool after_block_ = false;  // only whitespace since the last closed block
  // Current invoke / parameter.
  ToolCall call_;
  int call_params_ = 0;
  std::string param_name_;
  std::string param_closer_;  // closing tag of the open parameter, in its own dialect
  std::string param_value_;   // accumulated body (JSON bodies, nested members)
  bool param_string_ = true;
  std::string nested_json_;   // members of a nested object parameter, compact JSON
  ParsedAssistantOutput result_;
  uint64_t id_state_;
};

// Whole-text convenience: feeds text, finishes, returns the result.
ParsedAssistantOutput parse_dsml_output(std::string_view content_text, uint64_t id_seed);

}  // namespace ds4
