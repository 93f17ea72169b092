// Helpers of the tests that serve requests through the Engine over several ranks (threads over the
// in-process communicator): the demo model, deterministic prompts, reading a stream's tokens, and
// the follower ranks' threads.
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/model.h"
#include "parallel/thread_communicator.h"
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

// Ranks 1 .. group.world() - 1 on threads, each running body(comm, rank) over its own
// ThreadCommunicator. A rank that throws keeps its message (error(rank)) and aborts the group, so
// the other ranks' collectives throw instead of waiting for it. join() before reading errors.
class FollowerThreads {
 public:
  FollowerThreads(ThreadGroup& group, std::function<void(ThreadCommunicator&, int)> body)
      : body_(std::move(body)), errors_(static_cast<size_t>(group.world())) {
    for (int r = 1; r < group.world(); ++r)
      threads_.emplace_back([this, &group, r] {
        try {
          ThreadCommunicator comm(group, r);
          body_(comm, r);
        } catch (const std::exception& e) {
          errors_[size_t(r)] = e.what();
          group.abort(std::string("follower failed: ") + e.what());
        }
      });
  }
  ~FollowerThreads() { join(); }
  void join() {
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  const std::string& error(int rank) const { return errors_.at(static_cast<size_t>(rank)); }

 private:
  std::function<void(ThreadCommunicator&, int)> body_;
  std::vector<std::string> errors_;
  std::vector<std::thread> threads_;
};

}  // namespace ds4::parallel_test
