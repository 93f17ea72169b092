// Workload: turns the command line's prompt/output lengths, JSONL dataset, shared-prefix fraction and
// depth into request bodies. Deterministic: request i of a run with seed s always gets the same body.
// Synthetic prompts are words that are one token each in DeepSeek's, GPT-2's and Llama's BPE
// vocabularies, so "N input tokens" means N words (plus the chat template's own tokens).
// Used by the runner (runner.cpp) and main.cpp; tested in loadtest_workload_test.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ds4::loadtest {

enum class Endpoint { kChat, kCompletions };

// A length that is fixed (min == max) or uniform over [min, max] tokens.
struct LengthSpec {
  int64_t min = 0, max = 0;
};
// Parses "128" or "64:256". Returns "" or an error naming the problem.
std::string parse_length_spec(const std::string& text, const char* what, int64_t lowest, LengthSpec* out);

struct WorkloadSpec {
  Endpoint endpoint = Endpoint::kChat;
  std::string model;
  LengthSpec input{128, 128};      // prompt tokens (not counting depth or the template)
  LengthSpec output{128, 128};     // max_tokens
  int64_t depth_tokens = 0;        // context placed before the prompt (chat: a system message)
  double shared_prefix = 0;        // fraction of depth+prompt that is identical across requests
  std::string dataset_path;        // JSONL: {"prompt": str | "messages": [...], "max_tokens"?: int}
  bool ignore_eos = false;         // send "ignore_eos": true so the output runs to max_tokens
  std::string extra_body;          // a JSON object whose members are added to every body
  uint64_t seed = 1;
};

struct RequestSpec {
  std::string body;                   // JSON request body
  int64_t expected_input_tokens = -1; // depth + prompt words (-1 for dataset text)
  int64_t max_tokens = 0;
};

class Workload {
 public:
  // Validates the spec and loads the dataset. Returns "" or an error naming the problem.
  std::string init(const WorkloadSpec& spec);
  RequestSpec make(int64_t index) const;
  const WorkloadSpec& spec() const { return spec_; }
  // The synthetic vocabulary (each entry one token after a space).
  static const std::vector<std::string>& words();

 private:
  struct DatasetLine {
    std::string prompt;         // text prompt, or
    std::string messages_json;  // a raw JSON array of chat messages
    int64_t max_tokens = -1;    // -1: from spec_.output
  };
  std::string load_dataset();
  std::string synthetic_text(uint64_t stream, int64_t index, int64_t begin, int64_t end,
                             int64_t shared_len) const;
  std::string finish_body(std::string body, int64_t max_tokens) const;

  WorkloadSpec spec_;
  std::vector<DatasetLine> dataset_;
};

}  // namespace ds4::loadtest
