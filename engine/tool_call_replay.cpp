// Bounded LRU map: tool call id list -> exact sampled DSML text.
#include "engine/tool_call_replay.h"

namespace ds4 {

ToolCallReplay::ToolCallReplay(size_t max_entries, size_t max_bytes)
    : max_entries_(max_entries), max_bytes_(max_bytes) {}

std::string ToolCallReplay::make_key(const std::vector<std::string>& call_ids) {
  std::string key;
  for (const std::string& id : call_ids) {
    if (id.empty()) return {};
    key += id;
    key.push_back('\x1f');  // unit separator: cannot occur in a JSON-sourced id we accept
  }
  return key;
}

void ToolCallReplay::remember(const std::vector<std::string>& call_ids, std::string dsml_text) {
  std::string key = make_key(call_ids);
  if (key.empty() || dsml_text.size() > max_bytes_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (const auto it = index_.find(key); it != index_.end()) {
    bytes_ -= it->second->text.size();
    lru_.erase(it->second);
    index_.erase(it);
  }
  bytes_ += dsml_text.size();
  lru_.push_front(Entry{key, std::move(dsml_text)});
  index_.emplace(std::move(key), lru_.begin());
  evict_locked();
}

std::optional<std::string> ToolCallReplay::lookup(const std::vector<std::string>& call_ids) {
  const std::string key = make_key(call_ids);
  if (key.empty()) return std::nullopt;
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = index_.find(key);
  if (it == index_.end()) return std::nullopt;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->text;
}

void ToolCallReplay::evict_locked() {
  while (!lru_.empty() && (lru_.size() > max_entries_ || bytes_ > max_bytes_)) {
    bytes_ -= lru_.back().text.size();
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
}

size_t ToolCallReplay::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return lru_.size();
}

size_t ToolCallReplay::bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}

}  // namespace ds4
