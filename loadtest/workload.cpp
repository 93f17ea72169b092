// Request bodies for the load test (see workload.h). Every random choice is a hash of
// (seed, stream, request index, position), so bodies do not depend on issue order or threads.
#include "loadtest/workload.h"

#include <cstdlib>
#include <fstream>

#include <simdjson.h>

#include "loadtest/json_out.h"

namespace ds4::loadtest {
namespace {

constexpr uint64_t kSharedStream = 1, kUniqueStream = 2, kInputLenStream = 3, kOutputLenStream = 4;

uint64_t mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t hash4(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  return mix(mix(mix(mix(a) ^ b) ^ c) ^ d);
}

int64_t sample_length(const LengthSpec& l, uint64_t seed, uint64_t stream, int64_t index) {
  if (l.max <= l.min) return l.min;
  uint64_t span = static_cast<uint64_t>(l.max - l.min + 1);
  return l.min + static_cast<int64_t>(hash4(seed, stream, static_cast<uint64_t>(index), 0) % span);
}

bool parse_int(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (*end != '\0') return false;
  *out = v;
  return true;
}

}  // namespace

std::string parse_length_spec(const std::string& text, const char* what, int64_t lowest, LengthSpec* out) {
  size_t colon = text.find(':');
  int64_t a = 0, b = 0;
  bool ok = colon == std::string::npos
                ? parse_int(text, &a) && (b = a, true)
                : parse_int(text.substr(0, colon), &a) && parse_int(text.substr(colon + 1), &b);
  if (!ok) return std::string(what) + " must be N or MIN:MAX (integers), got '" + text + "'";
  if (a < lowest || b < a)
    return std::string(what) + " '" + text + "' needs " + std::to_string(lowest) + " <= MIN <= MAX";
  *out = LengthSpec{a, b};
  return "";
}

const std::vector<std::string>& Workload::words() {
  // Common English words; each is a single token of the DeepSeek V4 tokenizer both with and without
  // a leading space (the first word of a message has none), checked by tests/python/test_loadtest.py;
  // most are single tokens in other byte-level BPE vocabularies too.
  static const std::vector<std::string> kWords = {
      "the", "of", "and", "to", "in", "is", "was", "for", "that", "with", "as", "on", "by", "at",
      "from", "his", "her", "this", "which", "be", "are", "an", "had", "it", "not", "or", "have",
      "but", "they", "were", "one", "all", "their", "there", "been", "has", "when", "who", "will",
      "more", "no", "if", "out", "so", "said", "what", "up", "its", "about", "into", "than", "them",
      "can", "only", "other", "new", "some", "time", "could", "these", "two", "may", "then", "do",
      "first", "any", "my", "now", "such", "like", "our", "over", "man", "me", "even", "most",
      "made", "after", "also", "did", "many", "before", "must", "through", "back", "years",
      "where", "much", "your", "way", "well", "down", "should", "because", "each", "just", "those",
      "people", "how", "too", "little", "state", "good", "very", "make", "world", "still", "own",
      "see", "men", "work", "long", "get", "here", "between", "both", "life", "being", "under",
      "never", "day", "same", "another", "know", "while", "last", "might", "us", "great", "old",
      "year", "off", "come", "since", "against", "go", "right", "used", "take", "three"};
  return kWords;
}

std::string Workload::init(const WorkloadSpec& spec) {
  spec_ = spec;
  dataset_.clear();
  if (spec_.model.empty()) return "no model name (give --model)";
  if (spec_.shared_prefix < 0 || spec_.shared_prefix > 1)
    return "--shared-prefix must be a fraction in [0, 1]";
  if (spec_.depth_tokens < 0) return "--depth must be >= 0";
  if (spec_.output.min < 1) return "--output-tokens must be >= 1";
  if (!spec_.extra_body.empty()) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (parser.parse(spec_.extra_body).get(root) != simdjson::SUCCESS || !root.is_object())
      return "--extra-body must be a JSON object, got '" + spec_.extra_body + "'";
    std::string minified = simdjson::minify(root);
    spec_.extra_body = minified.size() > 2 ? minified.substr(1, minified.size() - 2) : "";
  }
  if (!spec_.dataset_path.empty()) return load_dataset();
  return "";
}

std::string Workload::load_dataset() {
  std::ifstream in(spec_.dataset_path);
  if (!in) return "cannot open dataset '" + spec_.dataset_path + "'";
  simdjson::dom::parser parser;
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = spec_.dataset_path + ":" + std::to_string(line_no);
    simdjson::dom::element root;
    if (parser.parse(line).get(root) != simdjson::SUCCESS || !root.is_object())
      return where + ": not a JSON object";
    DatasetLine d;
    std::string_view prompt;
    simdjson::dom::array messages;
    if (root["prompt"].get_string().get(prompt) == simdjson::SUCCESS) {
      d.prompt = prompt;
    } else if (root["messages"].get_array().get(messages) == simdjson::SUCCESS) {
      if (spec_.endpoint != Endpoint::kChat) return where + ": \"messages\" needs --endpoint chat";
      d.messages_json = simdjson::minify(messages);
    } else {
      return where + ": needs a string \"prompt\" or an array \"messages\"";
    }
    int64_t max_tokens = 0;
    if (root["max_tokens"].get_int64().get(max_tokens) == simdjson::SUCCESS ||
        root["output_tokens"].get_int64().get(max_tokens) == simdjson::SUCCESS) {
      if (max_tokens < 1) return where + ": max_tokens must be >= 1";
      d.max_tokens = max_tokens;
    }
    dataset_.push_back(std::move(d));
  }
  if (dataset_.empty()) return "dataset '" + spec_.dataset_path + "' has no requests";
  return "";
}

// Words at positions [begin, end) of request index's token sequence: positions below shared_len
// come from the run-wide shared sequence, the rest are unique to the request.
std::string Workload::synthetic_text(uint64_t stream, int64_t index, int64_t begin, int64_t end,
                                     int64_t shared_len) const {
  const std::vector<std::string>& w = words();
  std::string text;
  text.reserve(static_cast<size_t>(end - begin) * 6);
  for (int64_t pos = begin; pos < end; ++pos) {
    bool shared = pos < shared_len;
    uint64_t h = hash4(spec_.seed, shared ? kSharedStream : stream,
                       shared ? 0 : static_cast<uint64_t>(index), static_cast<uint64_t>(pos));
    if (pos > begin) text.push_back(' ');
    text.append(w[h % w.size()]);
  }
  return text;
}

std::string Workload::finish_body(std::string body, int64_t max_tokens) const {
  body += ",\"max_tokens\":" + std::to_string(max_tokens);
  body += ",\"stream\":true,\"stream_options\":{\"include_usage\":true}";
  if (spec_.ignore_eos) body += ",\"ignore_eos\":true";
  if (!spec_.extra_body.empty()) body += "," + spec_.extra_body;
  body += "}";
  return body;
}

RequestSpec Workload::make(int64_t index) const {
  RequestSpec r;
  std::string body = "{\"model\":" + json_string(spec_.model);
  if (!dataset_.empty()) {
    const DatasetLine& d = dataset_[static_cast<size_t>(index) % dataset_.size()];
    r.max_tokens = d.max_tokens > 0 ? d.max_tokens
                                    : sample_length(spec_.output, spec_.seed, kOutputLenStream, index);
    if (!d.messages_json.empty()) body += ",\"messages\":" + d.messages_json;
    else if (spec_.endpoint == Endpoint::kChat)
      body += ",\"messages\":[{\"role\":\"user\",\"content\":" + json_string(d.prompt) + "}]";
    else body += ",\"prompt\":" + json_string(d.prompt);
    r.body = finish_body(std::move(body), r.max_tokens);
    return r;
  }
  int64_t input = sample_length(spec_.input, spec_.seed, kInputLenStream, index);
  int64_t total = spec_.depth_tokens + input;
  int64_t shared = static_cast<int64_t>(spec_.shared_prefix * static_cast<double>(total) + 0.5);
  r.expected_input_tokens = total;
  r.max_tokens = sample_length(spec_.output, spec_.seed, kOutputLenStream, index);
  if (spec_.endpoint == Endpoint::kChat) {
    body += ",\"messages\":[";
    if (spec_.depth_tokens > 0) {
      body += "{\"role\":\"system\",\"content\":" +
              json_string(synthetic_text(kUniqueStream, index, 0, spec_.depth_tokens, shared)) + "},";
    }
    body += "{\"role\":\"user\",\"content\":" +
            json_string(synthetic_text(kUniqueStream, index, spec_.depth_tokens, total, shared)) + "}]";
  } else {
    body += ",\"prompt\":" + json_string(synthetic_text(kUniqueStream, index, 0, total, shared));
  }
  r.body = finish_body(std::move(body), r.max_tokens);
  return r;
}

}  // namespace ds4::loadtest
