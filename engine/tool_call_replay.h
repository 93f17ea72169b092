// Exact replay of generated tool calls: remembers, per assistant message (its tool call ids in
// order), the exact DSML text the model sampled, so that when a client resends the history the
// prompt holds the same bytes the model wrote (and the prefix cache still matches) instead of the
// canonical re-rendering. Bounded LRU (entries and bytes). Thread-safe: HTTP threads record after
// parsing output and look up while rendering. Owned by the server, passed to render_chat_prompt.
#pragma once
#include <cstddef>
#include <list>
#include <mutex>
#include <optional>
#include <string>
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

  size_t size() const;
  size_t bytes() const;

 private:
  struct Entry {
    std::string key;
    std::string text;
  };
  static std::string make_key(const std::vector<std::string>& call_ids);
  void evict_locked();

  const size_t max_entries_;
  const size_t max_bytes_;
  mutable std::mutex mutex_;
  std::list<Entry> lru_;  // front = most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  size_t bytes_ = 0;
};

}  // namespace ds4
