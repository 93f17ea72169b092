// ResponseWriter: what the generation relay (generation_route.cpp) needs from one API's response
// formatter, so that /v1/chat/completions, /v1/completions, /v1/messages and /v1/responses share one
// path from the engine's token stream to the client: feed tokens, learn whether a stop string
// ended the text, and get the stream's events or the final body. Implementations:
// OpenAiWriter (below, over ResponseBuilder), AnthropicWriter and ResponsesWriter (over
// BlockWriter). One per request, used on the connection's strand; not thread-safe.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "engine/assistant_stream.h"
#include "http/api_error.h"
#include "http/response_builder.h"
#include "scheduler/engine_api.h"

namespace ds4::http {

class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  // Text the prompt already holds on the assistant's behalf (a forced tool-call opening): parsed
  // like output, not counted. Call before any add_tokens.
  virtual void add_forced(std::span<const int32_t> tokens) = 0;
  // Newly sampled tokens (logprobs parallel or empty) and the usage as of them; streaming:
  // appends their events to `out`.
  virtual void add_tokens(std::span<const int32_t> tokens, std::span<const SampledLogprobs> logprobs,
                          const RequestUsage& usage, std::string& out) = 0;
  // A stop string matched: the caller ends the generation and calls finish (reason kStop).
  virtual bool stopped() const = 0;
  // Streaming: what follows the response header at once ("" when the API sends nothing yet).
  virtual std::string stream_start() { return {}; }
  // Ends the response: streaming, the final events; else the whole JSON body.
  virtual std::string finish(FinishReason reason, const RequestUsage& usage) = 0;
  // An error in the middle of a stream, in the API's shape.
  virtual std::string stream_error(const ApiError& error) = 0;
  // The body of an error reply (no stream), in the API's shape.
  virtual std::string error_body(const ApiError& error) const { return ds4::http::error_body(error); }
  // Keeps the connection alive while a long prompt is prefilled (before any output).
  virtual std::string heartbeat() const { return ": ping\n\n"; }

  virtual const AssistantMessage& message() const = 0;
  // The OpenAI finish reason (stop, length, abort, tool_calls): the metrics label.
  virtual const std::string& finish_reason() const = 0;
  virtual int64_t completion_tokens() const = 0;
  virtual bool first_text_sent() const = 0;
  // The prompt opened a reasoning that no token has closed yet.
  virtual bool in_reasoning() const { return false; }
};

// /v1/chat/completions and /v1/completions.
std::unique_ptr<ResponseWriter> make_openai_writer(const Tokenizer& tokenizer, ResponseSetup setup,
                                                   AssistantStreamOptions options);

}  // namespace ds4::http
