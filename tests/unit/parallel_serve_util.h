// Helpers of the tests that serve requests through the Engine over several ranks (threads over the
// in-process communicator): the demo model, deterministic prompts and reading a stream's tokens.
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "engine/model.h"
#include "scheduler/engine_api.h"

namespace ds4::parallel_test {

struct Demo {
  std::unique_ptr<Model> model = load_model(std::string(DS4_BINARY_DIR) + "/models/tiny-q2.gguf");
  const ModelConfig& config() const { return model->config; }
};
inline Demo& demo() {
  static Demo d;
  return d;
}

// n token ids from a seed (first token 0, the rest spread over the vocabulary).
inline std::vector<int32_t> tokens(int n, uint32_t seed) {
  std::vector<int32_t> t(n);
  for (int i = 0; i < n; ++i) t[i] = static_cast<int32_t>(100 + (seed * 7919u + i * 104729u) % 100000u);
  t[0] = 0;
  return t;
}

// Every token of a stream until it finishes (a failure after 60 s without news); the sampled
// tokens' log-probabilities into `logprobs` when given (requests that ask for them).
inline std::vector<int32_t> read_tokens(RequestStream& s, std::vector<float>* logprobs = nullptr) {
  std::vector<int32_t> out;
  StreamChunk c;
  do {
    if (!s.wait_for(c, std::chrono::seconds(60))) {
      ADD_FAILURE() << "request timed out";
      break;
    }
    out.insert(out.end(), c.tokens.begin(), c.tokens.end());
    if (logprobs)
      for (const SampledLogprobs& l : c.logprobs) logprobs->push_back(l.logprob);
  } while (!c.finished());
  return out;
}

}  // namespace ds4::parallel_test
