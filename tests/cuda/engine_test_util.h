// A GPU test's requests through the scheduler's Engine: submits them at once, runs the engine
// until each stream finishes and returns every request's generated tokens (a request that fails
// or does not finish within 60 s fails the test). Used by the GPU tests that compare the engine
// with and without speculative decoding (cuda_mtp_test, cuda_rollback_test), and the token
// history an oracle drafter replays.
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/forward.h"
#include "engine/model_config.h"
#include "scheduler/engine.h"
#include "scheduler/paged_kv_pool.h"
#include "scheduler/speculator.h"

namespace ds4::test {

// spec null: no speculation.
inline std::vector<std::vector<int32_t>> serve_through_engine(Backend& backend, KvPool& pool, const ModelConfig& c,
                                                              const std::vector<GenerationRequest>& requests,
                                                              Speculator* spec) {
  EngineConfig ec;
  ec.scheduler.max_num_seqs = 8;
  ec.scheduler.max_num_batched_tokens = 512;
  ec.context_length = c.context_length;
  ec.n_vocab = c.n_vocab;
  Engine engine(backend, pool, ec, spec);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const GenerationRequest& r : requests) streams.push_back(engine.submit(r));
  engine.start();
  std::vector<std::vector<int32_t>> out;
  for (auto& stream : streams) {
    std::vector<int32_t> tokens;
    StreamChunk chunk;
    while (stream->wait_for(chunk, std::chrono::seconds(60))) {
      tokens.insert(tokens.end(), chunk.tokens.begin(), chunk.tokens.end());
      if (chunk.finished()) break;
    }
    EXPECT_TRUE(chunk.finished() && chunk.error.empty()) << chunk.error;
    out.push_back(tokens);
  }
  engine.stop();
  return out;
}

// prompt -> prompt + generated tokens of each request (what an oracle drafter replays).
inline std::map<std::vector<int32_t>, std::vector<int32_t>> token_history(const std::vector<GenerationRequest>& requests,
                                                                          const std::vector<std::vector<int32_t>>& outputs) {
  std::map<std::vector<int32_t>, std::vector<int32_t>> history;
  for (size_t i = 0; i < requests.size(); ++i) {
    std::vector<int32_t> h = requests[i].prompt_tokens;
    h.insert(h.end(), outputs[i].begin(), outputs[i].end());
    history[requests[i].prompt_tokens] = h;
  }
  return history;
}

}  // namespace ds4::test
