// BlockWriter: what the Anthropic Messages and OpenAI Responses writers share, independent of the
// wire format. It feeds sampled tokens through engine/AssistantStream, counts them, and turns its
// event stream into an ordered list of output blocks (reasoning, text, tool call), each opened,
// extended by deltas and closed exactly once, in the order the model wrote them. Subclasses format
// those moments as their API's SSE events (streaming) and build the final body from the block
// list; the stream and the body therefore always agree. A tool call whose DSML block did not close
// correctly (its text then arrives as content) is kept in the list with complete = false; bodies
// leave it out. One per request; not thread-safe.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "http/response_writer.h"

namespace ds4::http {

enum class BlockKind { kReasoning, kText, kToolCall };

struct OutputBlock {
  BlockKind kind = BlockKind::kText;
  std::string call_id;  // tool call
  std::string name;     // tool call: the function name
  std::string text;     // reasoning / text / the arguments' JSON text so far
  bool complete = false;  // tool call: its DSML block closed correctly
};

// How the turn ended, in the terms both agent APIs use.
enum class TurnEnd { kEndTurn, kToolUse, kStopSequence, kMaxTokens, kAborted };

class BlockWriter : public ResponseWriter {
 public:
  BlockWriter(const Tokenizer& tokenizer, ResponseSetup setup, AssistantStreamOptions options);

  void add_forced(std::span<const int32_t> tokens) override;
  void add_tokens(std::span<const int32_t> tokens, std::span<const SampledLogprobs> logprobs,
                  const RequestUsage& usage, std::string& out) override;
  bool stopped() const override { return stream_.stopped(); }
  std::string finish(FinishReason reason, const RequestUsage& usage) override;
  const AssistantMessage& message() const override { return stream_.message(); }
  const std::string& finish_reason() const override { return openai_reason_; }
  int64_t completion_tokens() const override { return completion_tokens_; }
  bool first_text_sent() const override { return started_; }
  bool in_reasoning() const override { return in_reasoning_; }

 protected:
  // Streaming hooks; each appends its API's events to out.
  virtual void on_start(const RequestUsage& usage, std::string& out) = 0;  // before the first block
  virtual void on_open(size_t index, std::string& out) = 0;
  virtual void on_delta(size_t index, std::string_view delta, std::string& out) = 0;
  virtual void on_close(size_t index, std::string& out) = 0;
  // End of the response: streaming, the closing events; else the whole JSON body.
  virtual std::string end_stream(const RequestUsage& usage) = 0;
  virtual std::string body(const RequestUsage& usage) = 0;

  const ResponseSetup& setup() const { return setup_; }
  const std::vector<OutputBlock>& blocks() const { return blocks_; }
  TurnEnd turn_end() const { return end_; }
  // Sampled tokens before the one that closed the reasoning (all of them while it is open).
  int64_t reasoning_tokens() const { return reasoning_tokens_; }
  // The stop string that ended the text ("" when none did).
  std::string matched_stop() const;
  // Tool call arguments as a JSON object text ("{}" when empty; a non-object wrapped as
  // {"arguments": text}).
  static std::string arguments_object(const std::string& arguments);

 private:
  void route(std::vector<AssistantEvent>& events, std::string* out);
  void open(OutputBlock block, std::string* out);
  void close_current(std::string* out);
  void decide_end(FinishReason reason);
  void count_reasoning(int32_t token, bool sampled);

  ResponseSetup setup_;
  std::vector<std::string> stop_strings_;
  AssistantStream stream_;
  std::vector<AssistantEvent> held_;  // forced text's events: routed with the first tokens
  std::vector<OutputBlock> blocks_;
  bool open_ = false;                 // the last block is still open
  bool started_ = false;              // on_start ran
  int64_t completion_tokens_ = 0;
  int32_t think_end_id_;
  bool in_reasoning_;                 // no </think> seen yet (the prompt opened with <think>)
  int64_t reasoning_tokens_ = 0;
  TurnEnd end_ = TurnEnd::kEndTurn;
  std::string openai_reason_;
};

}  // namespace ds4::http
