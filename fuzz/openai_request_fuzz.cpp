// libFuzzer target: JSON request parsing and validation of the OpenAI routes plus their
// preparation (chat template, tool definitions, tokenization, limits), without HTTP. Byte 0 picks
// the endpoint (chat, completions, tokenize, detokenize); the rest is the request body. The checks
// live in request_pipeline.h: every refusal is a 4xx OpenAI error with a JSON body, every accepted
// request is one the engine can run.
#include <cstdint>
#include <string_view>

#include "fuzz/request_pipeline.h"

// Loads the tokenizer before fuzzing starts, so its load time never counts as a slow input.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)ds4::fuzz::shipped_tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto endpoint = static_cast<ds4::fuzz::Endpoint>(data[0] % 4);
  ds4::fuzz::run_request(endpoint, std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  return 0;
}
