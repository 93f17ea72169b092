// Bounded LRU maps: tool call id list -> exact sampled DSML text; turn text -> sampled token ids.
#include "engine/tool_call_replay.h"

namespace ds4 {

template <typename V>
void ToolCallReplay::Lru<V>::put(std::string key, V value, size_t entry_bytes, size_t max_entries, size_t max_bytes) {
  if (const auto it = index.find(key); it != index.end()) {
    bytes -= it->second->bytes;
    auto node = it->second;
    index.erase(it);
    order.erase(node);
  }
  bytes += entry_bytes;
  order.push_front(Entry{std::move(key), std::move(value), entry_bytes});
  index.emplace(std::string_view(order.front().key), order.begin());
  while (!order.empty() && (order.size() > max_entries || bytes > max_bytes)) {
    bytes -= order.back().bytes;
    index.erase(std::string_view(order.back().key));
    order.pop_back();
  }
}

template <typename V>
const V* ToolCallReplay::Lru<V>::get(std::string_view key) {
  const auto it = index.find(key);
  if (it == index.end()) return nullptr;
  order.splice(order.begin(), order, it->second);
  return &it->second->value;
}

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
  const size_t entry_bytes = dsml_text.size();
  std::lock_guard<std::mutex> lock(mutex_);
  calls_.put(std::move(key), std::move(dsml_text), entry_bytes, max_entries_, max_bytes_);
}

std::optional<std::string> ToolCallReplay::lookup(const std::vector<std::string>& call_ids) {
  const std::string key = make_key(call_ids);
  if (key.empty()) return std::nullopt;
  std::lock_guard<std::mutex> lock(mutex_);
  if (const std::string* text = calls_.get(key)) return *text;
  return std::nullopt;
}

void ToolCallReplay::remember_turn(std::string text, std::vector<int32_t> ids) {
  const size_t entry_bytes = text.size() + ids.size() * sizeof(int32_t);
  if (text.empty() || ids.empty() || entry_bytes > max_bytes_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  turns_.put(std::move(text), std::move(ids), entry_bytes, max_entries_, max_bytes_);
}

std::optional<std::vector<int32_t>> ToolCallReplay::lookup_turn(std::string_view text) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (const std::vector<int32_t>* ids = turns_.get(text)) return *ids;
  return std::nullopt;
}

size_t ToolCallReplay::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return calls_.order.size();
}

size_t ToolCallReplay::bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return calls_.bytes;
}

size_t ToolCallReplay::turn_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return turns_.order.size();
}

size_t ToolCallReplay::turn_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return turns_.bytes;
}

}  // namespace ds4
