// Exact replay of generated assistant output, so that when a client resends the history the prompt
// holds what the model wrote and the prefix cache still matches: (1) per assistant message (its
// tool call ids in order) the exact DSML text the model sampled, instead of the canonical
// re-rendering; (2) per generated turn the token ids the model sampled, keyed by the exact text
// they decode to (as the chat template renders that turn: [reasoning </think>] content [DSML] EOS),
// instead of a re-tokenization of that text (which can differ from the sampled ids; with random
// weights it nearly always does). Both are bounded LRUs (entries and bytes, each). Thread-safe:
// HTTP threads record after a generation finishes and look up while rendering / tokenizing. Owned
// by the server, passed to render_chat_prompt and tokenize_chat_prompt.
#pragma once
#include <cstddef>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ds4 {

class ToolCallReplay {
 public:
  explicit ToolCallReplay(size_t max_entries = 4096, size_t max_bytes = size_t{64} << 20);

  // Records dsml_text (content is not part of it) for the calls with these ids, most recent.
  // Ignored when ids is empty, any id is empty, or the text alone exceeds max_bytes.
  void remember(const std::vector<std::string>& call_ids, std::string dsml_text);
  // The text recorded for exactly these ids in this order; marks it most recently used.
  std::optional<std::string> lookup(const std::vector<std::string>& call_ids);

  // Records the ids of one generated turn under `text`, the exact bytes they decode to. Ignored
  // when either is empty or the entry alone exceeds max_bytes.
  void remember_turn(std::string text, std::vector<int32_t> ids);
  // The ids recorded for exactly this text; marks them most recently used.
  std::optional<std::vector<int32_t>> lookup_turn(std::string_view text);

  size_t size() const;   // tool-call entries
  size_t bytes() const;  // bytes of tool-call entries
  size_t turn_count() const;
  size_t turn_bytes() const;

 private:
  // A bounded LRU map from a string key to a value of a known byte size.
  template <typename V>
  struct Lru {
    struct Entry {
      std::string key;
      V value;
      size_t bytes;
    };
    std::list<Entry> order;  // front = most recently used
    std::unordered_map<std::string_view, typename std::list<Entry>::iterator> index;  // views into order
    size_t bytes = 0;
    void put(std::string key, V value, size_t entry_bytes, size_t max_entries, size_t max_bytes);
    const V* get(std::string_view key);
  };
  static std::string make_key(const std::vector<std::string>& call_ids);

  const size_t max_entries_;
  const size_t max_bytes_;
  mutable std::mutex mutex_;
  Lru<std::string> calls_;
  Lru<std::vector<int32_t>> turns_;
};

}  // namespace ds4
