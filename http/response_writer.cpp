// OpenAiWriter: the ResponseWriter of the OpenAI chat / completions routes, a thin adapter over
// ResponseBuilder (see response_writer.h).
#include "http/response_writer.h"

namespace ds4::http {

namespace {

class OpenAiWriter final : public ResponseWriter {
 public:
  OpenAiWriter(const Tokenizer& tokenizer, ResponseSetup setup, AssistantStreamOptions options)
      : builder_(tokenizer, std::move(setup), std::move(options)) {}

  void add_forced(std::span<const int32_t> tokens) override { builder_.add_forced(tokens); }
  void add_tokens(std::span<const int32_t> tokens, std::span<const SampledLogprobs> logprobs, const RequestUsage&,
                  std::string& out) override {
    builder_.add_tokens(tokens, logprobs, out);
  }
  bool stopped() const override { return builder_.stopped(); }
  std::string finish(FinishReason reason, const RequestUsage& usage) override { return builder_.finish(reason, usage); }
  std::string stream_error(const ApiError& error) override { return ResponseBuilder::stream_error(error); }
  std::string heartbeat() const override { return ResponseBuilder::heartbeat(); }
  const AssistantMessage& message() const override { return builder_.message(); }
  const std::string& finish_reason() const override { return builder_.finish_reason(); }
  int64_t completion_tokens() const override { return builder_.completion_tokens(); }
  bool first_text_sent() const override { return builder_.first_text_sent(); }

 private:
  ResponseBuilder builder_;
};

}  // namespace

std::unique_ptr<ResponseWriter> make_openai_writer(const Tokenizer& tokenizer, ResponseSetup setup,
                                                   AssistantStreamOptions options) {
  return std::make_unique<OpenAiWriter>(tokenizer, std::move(setup), std::move(options));
}

}  // namespace ds4::http
