// ResponseBuilder: turns one request's sampled tokens into its OpenAI response: SSE chunks as the
// tokens arrive (chat.completion.chunk / text_completion; one chunk per token that shows text, the
// first one carrying the role together with the first text; tool calls as deltas; usage in a final
// chunk when asked; data: [DONE]) or, without streaming, one JSON body at the end. Text handling
// (UTF-8, <think> split, stop strings, DSML tool calls) is engine/AssistantStream's. One per
// request, used by the HTTP generation route on its connection's strand; not thread-safe.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/assistant_stream.h"
#include "http/api_error.h"
#include "scheduler/engine_api.h"

namespace ds4::http {

struct ResponseSetup {
  bool chat = true;        // chat.completion(.chunk); else text_completion
  std::string id;          // chatcmpl-... / cmpl-...
  std::string model;
  int64_t created = 0;     // unix seconds
  bool stream = false;
  bool include_usage = false;
  bool continuous_usage = false;
  bool return_token_ids = false;
  bool logprobs = false;
  int top_logprobs = 0;
  bool include_reasoning = true;
  std::string echo_text;                 // completions with echo: the prompt text, first in the output
  std::vector<int32_t> prompt_token_ids; // reported with return_token_ids
  int64_t prompt_tokens = 0;
};

class ResponseBuilder {
 public:
  ResponseBuilder(const Tokenizer& tokenizer, ResponseSetup setup, AssistantStreamOptions options);

  // Text the prompt already holds on the assistant's behalf (a forced tool-call opening): parsed
  // like output but not counted as generated tokens. Call before any add_tokens.
  void add_forced(std::span<const int32_t> tokens);
  // New sampled tokens (logprobs parallel to tokens, or empty). Streaming: appends their SSE events
  // to sse. Tokens after a stop string matched are ignored.
  void add_tokens(std::span<const int32_t> tokens, std::span<const SampledLogprobs> logprobs, std::string& sse);
  // A stop string matched: the caller ends the generation and calls finish (reason kStop).
  bool stopped() const { return stream_.stopped(); }
  // Ends the response: streaming, the final chunk(s), usage and [DONE]; else the JSON body.
  std::string finish(FinishReason reason, const RequestUsage& usage);
  // An error in the middle of a stream: an error event and [DONE].
  static std::string stream_error(const ApiError& error);
  // A comment line that keeps the connection alive while a long prompt is prefilled.
  static std::string heartbeat() { return ": ping\n\n"; }

  const AssistantMessage& message() const { return stream_.message(); }
  const std::string& finish_reason() const { return finish_reason_; }
  int64_t completion_tokens() const { return completion_tokens_; }
  bool first_text_sent() const { return role_sent_; }

 private:
  struct Pending {
    std::vector<int32_t> ids;            // tokens not yet reported in a chunk
    std::vector<SampledLogprobs> logprobs;
  };
  void process(int32_t token, const SampledLogprobs* logprobs, bool count, std::string& sse);
  void emit_chunk(std::vector<AssistantEvent>& events, const char* finish_reason, std::string& sse);
  void write_chat_delta(class JsonWriter& w, std::vector<AssistantEvent>& events);
  std::string completion_text(std::vector<AssistantEvent>& events);
  void write_logprobs(class JsonWriter& w, std::span<const int32_t> ids, std::span<const SampledLogprobs> lps,
                      size_t text_offset) const;
  void write_usage(class JsonWriter& w, const RequestUsage* usage) const;
  std::string chat_body(const RequestUsage& usage);
  std::string completion_body(const RequestUsage& usage);

  const Tokenizer& tok_;
  ResponseSetup setup_;
  AssistantStream stream_;
  Pending pending_;
  std::vector<int32_t> all_ids_;                 // every generated token (non-stream output, token ids)
  std::vector<SampledLogprobs> all_logprobs_;
  std::vector<AssistantEvent> held_events_;      // non-stream: events are only collected
  std::string completion_text_;                  // non-stream completions: the text so far
  bool role_sent_ = false;
  bool in_reasoning_ = false;                    // completions: inside a re-inserted <think>
  bool saw_reasoning_ = false;
  int64_t completion_tokens_ = 0;
  size_t text_offset_ = 0;                       // completions logprobs: bytes of text so far
  std::string finish_reason_;
};

}  // namespace ds4::http
