// Byte-level BPE over raw bytes: the merge table (pair of token ids -> rank and merged id) and the
// merge loop (lowest rank first, leftmost on ties, as HF tokenizers' BPE::merge_word does).
// Built from the GPT-2 byte-mapped vocabulary; owned by Tokenizer, immutable after construction
// and safe to use from many threads with per-thread BpeScratch.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ds4 {

// GPT-2 byte -> code point map (MODEL.md 6.1): printable Latin-1 bytes map to themselves, the
// other 68 to U+0100.. in byte order.
char32_t gpt2_byte_to_codepoint(uint8_t byte);
// Inverse; returns -1 for a code point that is not in the byte alphabet.
int gpt2_codepoint_to_byte(char32_t cp);
// Maps every byte of raw to its code point, UTF-8 encoded (the form vocab strings are stored in).
std::string gpt2_map_bytes(std::string_view raw);
// Inverse of gpt2_map_bytes; false when mapped holds a character outside the byte alphabet.
bool gpt2_unmap(std::string_view mapped, std::string& raw_out);

struct BpeScratch {
  struct Symbol {
    int32_t id;
    int32_t prev;  // index of the previous live symbol, -1 at the start
    int32_t next;  // index of the next live symbol, -1 at the end
    bool alive;
  };
  struct Candidate {
    int32_t rank;
    int32_t pos;  // index of the left symbol
  };
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
};

class BpeModel {
 public:
  // byte_token[b]: id of the single-byte token; merges as (left id, right id, merged id), rank =
  // index. Ids must be >= 0.
  struct Merge {
    int32_t left, right, merged;
  };
  BpeModel(const int32_t (&byte_token)[256], const std::vector<Merge>& merges);

  // Appends the ids of one pre-tokenized piece (raw bytes, non-empty) to out.
  void encode_piece(std::string_view piece, std::vector<int32_t>& out, BpeScratch& scratch) const;

  size_t num_merges() const { return num_merges_; }

 private:
  struct Slot {
    uint64_t key;  // (left << 32) | right; kEmpty for a free slot
    int32_t rank;
    int32_t merged;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  const Slot* find(int32_t left, int32_t right) const;
  void push_candidate(BpeScratch& s, int32_t pos) const;

  int32_t byte_token_[256];
  std::vector<Slot> slots_;  // open addressing, power-of-two size, load <= 0.5
  uint64_t mask_ = 0;
  size_t num_merges_ = 0;
};

}  // namespace ds4
