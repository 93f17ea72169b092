// DeepSeek V4 tokenizer: byte-level BPE with the V4 pre-tokenizer and literal added tokens.
// encode(text, parse_special): added tokens (all 1283 of tokenizer.json: BOS/EOS, <｜User｜>,
// <think>, ｜DSML｜, placeholders, ...) are matched leftmost-longest first when parse_special is
// set, exactly as the reference does; the text between them is pre-tokenized and BPE-encoded.
// Invalid UTF-8: every ill-formed byte is a character of its own (class "other") that goes
// through the byte map like any byte, so encode never fails and decode(encode(x)) == x for any
// byte string. Immutable after construction; encode/decode are thread-safe.
// Built from TokenizerTables (shipped tables or GGUF). Used by chat rendering, HTTP, tests.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/bpe.h"
#include "engine/pretokenizer.h"
#include "engine/tokenizer_tables.h"

namespace ds4 {

// Ids of the strings the chat format uses (looked up by text, never hard-coded).
struct ChatTokenIds {
  int32_t bos = -1;        // <｜begin▁of▁sentence｜>
  int32_t eos = -1;        // <｜end▁of▁sentence｜>
  int32_t user = -1;       // <｜User｜>
  int32_t assistant = -1;  // <｜Assistant｜>
  int32_t think_begin = -1;  // <think>
  int32_t think_end = -1;    // </think>
  int32_t dsml = -1;         // ｜DSML｜
};

class Tokenizer {
 public:
  // Throws LoadError when the tables are inconsistent (a byte without a token, a merge whose
  // parts or result are not in the vocabulary, a chat token missing).
  explicit Tokenizer(const TokenizerTables& tables,
                     PretokenizerFlavor flavor = PretokenizerFlavor::kHfRegex);

  std::vector<int32_t> encode(std::string_view text, bool parse_special) const;
  void encode_append(std::string_view text, bool parse_special, std::vector<int32_t>& out) const;

  // Raw bytes of the ids concatenated (may end inside a UTF-8 sequence). Ids must be valid.
  std::string decode(std::span<const int32_t> ids) const;
  void decode_append(int32_t id, std::string& out) const { out += token_bytes(id); }
  // Bytes a token decodes to: the reverse byte map of its text, or the text itself when it holds
  // characters outside the byte alphabet (added tokens such as <｜User｜>).
  const std::string& token_bytes(int32_t id) const { return token_bytes_[static_cast<size_t>(id)]; }
  // The vocabulary string of a token (byte-mapped form, as stored in GGUF).
  const std::string& token_text(int32_t id) const { return token_text_[static_cast<size_t>(id)]; }

  int32_t vocab_size() const { return static_cast<int32_t>(token_text_.size()); }
  bool is_valid_id(int32_t id) const { return id >= 0 && id < vocab_size(); }
  // Index of the first invalid id, if any (for validating client-supplied ids).
  std::optional<size_t> find_invalid_id(std::span<const int32_t> ids) const;
  // Control tokens (GGUF type 3: BOS, EOS, pad, placeholders).
  bool is_control(int32_t id) const { return types_[static_cast<size_t>(id)] == 3; }
  // Whether a generated token shows in the output text: control tokens do not, except the think
  // and DSML markers, which the output parsers need even if a GGUF marks them as control.
  bool shows_in_output(int32_t id) const {
    return !is_control(id) || id == chat_ids_.think_begin || id == chat_ids_.think_end || id == chat_ids_.dsml;
  }
  bool is_added(int32_t id) const { return types_[static_cast<size_t>(id)] == 3 || types_[static_cast<size_t>(id)] == 4; }
  // Id of the token whose text (added token content, or raw bytes of a vocab token) is text.
  std::optional<int32_t> find_token(std::string_view text) const;

  const ChatTokenIds& chat_ids() const { return chat_ids_; }
  PretokenizerFlavor flavor() const { return flavor_; }

 private:
  struct TrieNode {
    int32_t token_id = -1;                          // added token ending here
    std::vector<std::pair<uint8_t, int32_t>> edges;  // byte -> child node index
  };
  void build_added_trie();
  // Length of the longest added token at text[pos], 0 if none; sets id.
  size_t match_added(std::string_view text, size_t pos, int32_t& id) const;
  // Buffers of one encode call; `seen` maps a piece (a view into the text being encoded) to the
  // [start, count) of its ids in the output, so repeated pieces skip BPE.
  struct EncodeScratch {
    PretokScratch pre;
    BpeScratch bpe;
    std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> seen;
  };
  static constexpr size_t kMaxCachedPieceBytes = 64;
  void encode_ordinary(std::string_view text, std::vector<int32_t>& out, EncodeScratch& scratch) const;

  PretokenizerFlavor flavor_;
  std::vector<std::string> token_text_;
  std::vector<std::string> token_bytes_;
  std::vector<int32_t> types_;
  std::unordered_map<std::string, int32_t> by_bytes_;  // token bytes -> id (added tokens win)
  std::vector<TrieNode> trie_;                          // node 0 is the root
  bool trie_first_byte_[256] = {};
  BpeModel bpe_;
  ChatTokenIds chat_ids_;
};

}  // namespace ds4
