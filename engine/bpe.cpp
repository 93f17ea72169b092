// Byte-level BPE: byte map, merge hash table, heap-driven merge loop.
#include "engine/bpe.h"

#include <algorithm>
#include <cstring>

#include "engine/unicode_class.h"

namespace ds4 {
namespace {

bool byte_maps_to_itself(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint64_t hash_key(uint64_t key) { return key * 0x9E3779B97F4A7C15ull; }

// Heap order: smallest rank first, then smallest position (leftmost).
bool heap_after(const BpeScratch::Candidate& a, const BpeScratch::Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

}  // namespace

char32_t gpt2_byte_to_codepoint(uint8_t byte) {
  if (byte_maps_to_itself(byte)) return byte;
  int shifted = 0;  // number of non-printable bytes below this one
  for (int b = 0; b < byte; ++b) shifted += byte_maps_to_itself(b) ? 0 : 1;
  return 256 + shifted;
}

int gpt2_codepoint_to_byte(char32_t cp) {
  if (cp < 256) return byte_maps_to_itself(static_cast<int>(cp)) ? static_cast<int>(cp) : -1;
  if (cp >= 256 + 68) return -1;
  int index = static_cast<int>(cp - 256);
  for (int b = 0; b < 256; ++b) {
    if (byte_maps_to_itself(b)) continue;
    if (index-- == 0) return b;
  }
  return -1;
}

std::string gpt2_map_bytes(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  for (char c : raw) append_utf8(gpt2_byte_to_codepoint(static_cast<uint8_t>(c)), out);
  return out;
}

bool gpt2_unmap(std::string_view mapped, std::string& raw_out) {
  raw_out.clear();
  for (size_t i = 0; i < mapped.size();) {
    const unicode::Utf8Unit u = unicode::decode_utf8(mapped.data() + i, mapped.size() - i);
    const int b = u.valid ? gpt2_codepoint_to_byte(u.cp) : -1;
    if (b < 0) return false;
    raw_out.push_back(static_cast<char>(b));
    i += u.length;
  }
  return true;
}

BpeModel::BpeModel(const int32_t (&byte_token)[256], const std::vector<Merge>& merges) {
  std::memcpy(byte_token_, byte_token, sizeof(byte_token_));
  size_t capacity = 16;
  while (capacity < merges.size() * 2) capacity *= 2;
  slots_.assign(capacity, Slot{kEmpty, 0, 0});
  mask_ = capacity - 1;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& m = merges[rank];
    const uint64_t key = (uint64_t(uint32_t(m.left)) << 32) | uint32_t(m.right);
    for (uint64_t i = hash_key(key) >> 40 & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) break;  // duplicate pair: the first (lowest) rank wins
      if (slots_[i].key != kEmpty) continue;
      slots_[i] = Slot{key, static_cast<int32_t>(rank), m.merged};
      ++num_merges_;
      break;
    }
  }
}

const BpeModel::Slot* BpeModel::find(int32_t left, int32_t right) const {
  const uint64_t key = (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  for (uint64_t i = hash_key(key) >> 40 & mask_;; i = (i + 1) & mask_) {
    if (slots_[i].key == key) return &slots_[i];
    if (slots_[i].key == kEmpty) return nullptr;
  }
}

void BpeModel::push_candidate(BpeScratch& s, int32_t pos) const {
  const int32_t next = s.symbols[pos].next;
  if (next < 0) return;
  if (const Slot* slot = find(s.symbols[pos].id, s.symbols[next].id)) {
    s.heap.push_back({slot->rank, pos});
    std::push_heap(s.heap.begin(), s.heap.end(), heap_after);
  }
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& out,
                            BpeScratch& s) const {
  const auto n = static_cast<int32_t>(piece.size());
  if (n == 1) {
    out.push_back(byte_token_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  s.symbols.resize(n);
  for (int32_t i = 0; i < n; ++i)
    s.symbols[i] = {byte_token_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1, true};
  s.heap.clear();
  for (int32_t i = 0; i + 1 < n; ++i) push_candidate(s, i);
  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), heap_after);
    const BpeScratch::Candidate c = s.heap.back();
    s.heap.pop_back();
    BpeScratch::Symbol& left = s.symbols[c.pos];
    if (!left.alive || left.next < 0) continue;
    // Stale when either side changed since the candidate was pushed: the pair's rank differs.
    const Slot* slot = find(left.id, s.symbols[left.next].id);
    if (!slot || slot->rank != c.rank) continue;
    BpeScratch::Symbol& right = s.symbols[left.next];
    left.id = slot->merged;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) s.symbols[right.next].prev = c.pos;
    if (left.prev >= 0) push_candidate(s, left.prev);
    push_candidate(s, c.pos);
  }
  for (int32_t i = 0; i >= 0; i = s.symbols[i].next) out.push_back(s.symbols[i].id);
}

}  // namespace ds4
