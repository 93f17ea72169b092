// Tokenizer construction (byte tokens, merges, added-token trie, chat ids) and encode/decode.
#include "engine/tokenizer.h"

#include "engine/load_error.h"

namespace ds4 {
namespace {

constexpr int32_t kTypeControl = 3;
constexpr int32_t kTypeUserDefined = 4;

BpeModel make_bpe(const TokenizerTables& tables) {
  if (tables.types.size() != tables.tokens.size())
    throw LoadError("tokenizer tables: " + std::to_string(tables.tokens.size()) + " tokens but " +
                    std::to_string(tables.types.size()) + " token types");
  std::unordered_map<std::string_view, int32_t> by_text;
  by_text.reserve(tables.tokens.size());
  for (size_t i = 0; i < tables.tokens.size(); ++i) {
    const int32_t type = tables.types[i];
    if (type == kTypeControl || type == kTypeUserDefined) continue;  // never a merge part
    by_text.emplace(tables.tokens[i], static_cast<int32_t>(i));
  }
  int32_t byte_token[256];
  for (int b = 0; b < 256; ++b) {
    const std::string mapped = gpt2_map_bytes(std::string(1, static_cast<char>(b)));
    const auto it = by_text.find(mapped);
    if (it == by_text.end())
      throw LoadError("tokenizer vocabulary has no token for byte " + std::to_string(b));
    byte_token[b] = it->second;
  }
  std::vector<BpeModel::Merge> merges;
  merges.reserve(tables.merges.size());
  for (size_t rank = 0; rank < tables.merges.size(); ++rank) {
    const std::string& m = tables.merges[rank];
    const size_t space = m.find(' ');
    if (space == std::string::npos || m.find(' ', space + 1) != std::string::npos)
      throw LoadError("tokenizer merge " + std::to_string(rank) + " is not \"left right\": " + m);
    const std::string_view left(m.data(), space), right(m.data() + space + 1, m.size() - space - 1);
    const auto l = by_text.find(left), r = by_text.find(right);
    const auto merged = by_text.find(std::string(left) + std::string(right));
    if (l == by_text.end() || r == by_text.end() || merged == by_text.end())
      throw LoadError("tokenizer merge " + std::to_string(rank) + " (" + m +
                      ") uses a token that is not in the vocabulary");
    merges.push_back({l->second, r->second, merged->second});
  }
  return BpeModel(byte_token, merges);
}

int32_t require_added(const Tokenizer& tok, std::string_view text) {
  const std::optional<int32_t> id = tok.find_token(text);
  if (!id) throw LoadError("tokenizer has no token \"" + std::string(text) + "\"");
  if (!tok.is_added(*id))
    throw LoadError("tokenizer token \"" + std::string(text) + "\" (id " + std::to_string(*id) +
                    ") is not marked as a control or user-defined token");
  return *id;
}

}  // namespace

Tokenizer::Tokenizer(const TokenizerTables& tables, PretokenizerFlavor flavor)
    : flavor_(flavor),
      token_text_(tables.tokens),
      types_(tables.types),
      bpe_(make_bpe(tables)) {
  token_bytes_.resize(token_text_.size());
  by_bytes_.reserve(token_text_.size());
  for (size_t i = 0; i < token_text_.size(); ++i) {
    if (!gpt2_unmap(token_text_[i], token_bytes_[i])) token_bytes_[i] = token_text_[i];
    const bool added = is_added(static_cast<int32_t>(i));
    auto [it, inserted] = by_bytes_.emplace(token_bytes_[i], static_cast<int32_t>(i));
    if (!inserted && added && !is_added(it->second)) it->second = static_cast<int32_t>(i);
  }
  build_added_trie();
  chat_ids_.bos = require_added(*this, "<｜begin▁of▁sentence｜>");
  chat_ids_.eos = require_added(*this, "<｜end▁of▁sentence｜>");
  chat_ids_.user = require_added(*this, "<｜User｜>");
  chat_ids_.assistant = require_added(*this, "<｜Assistant｜>");
  chat_ids_.think_begin = require_added(*this, "<think>");
  chat_ids_.think_end = require_added(*this, "</think>");
  chat_ids_.dsml = require_added(*this, "｜DSML｜");
}

void Tokenizer::build_added_trie() {
  trie_.assign(1, TrieNode{});
  for (int32_t id = 0; id < vocab_size(); ++id) {
    if (!is_added(id) || token_text_[id].empty()) continue;
    int32_t node = 0;
    for (char c : token_text_[id]) {
      const auto byte = static_cast<uint8_t>(c);
      int32_t child = -1;
      for (const auto& [edge_byte, edge_node] : trie_[node].edges)
        if (edge_byte == byte) child = edge_node;
      if (child < 0) {
        child = static_cast<int32_t>(trie_.size());
        trie_[node].edges.emplace_back(byte, child);
        trie_.emplace_back();
      }
      node = child;
    }
    trie_[node].token_id = id;
    trie_first_byte_[static_cast<uint8_t>(token_text_[id][0])] = true;
  }
}

size_t Tokenizer::match_added(std::string_view text, size_t pos, int32_t& id) const {
  size_t best = 0;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto byte = static_cast<uint8_t>(text[i]);
    int32_t child = -1;
    for (const auto& [edge_byte, edge_node] : trie_[node].edges)
      if (edge_byte == byte) { child = edge_node; break; }
    if (child < 0) break;
    node = child;
    if (trie_[node].token_id >= 0) {
      best = i + 1 - pos;
      id = trie_[node].token_id;
    }
  }
  return best;
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<int32_t>& out,
                                EncodeScratch& scratch) const {
  if (text.empty()) return;
  pretokenize(text, flavor_, scratch.pre);
  uint32_t begin = 0;
  for (uint32_t end : scratch.pre.piece_ends) {
    const std::string_view piece = text.substr(begin, end - begin);
    begin = end;
    if (piece.size() == 1 || piece.size() > kMaxCachedPieceBytes) {
      bpe_.encode_piece(piece, out, scratch.bpe);
      continue;
    }
    // Words repeat a lot in long prompts: reuse the ids of the piece's first occurrence.
    const auto [it, inserted] = scratch.seen.try_emplace(piece, static_cast<uint32_t>(out.size()), 0u);
    if (!inserted) {
      out.insert(out.end(), out.begin() + it->second.first, out.begin() + it->second.first + it->second.second);
      continue;
    }
    bpe_.encode_piece(piece, out, scratch.bpe);
    it->second.second = static_cast<uint32_t>(out.size()) - it->second.first;
  }
}

void Tokenizer::encode_append(std::string_view text, bool parse_special,
                              std::vector<int32_t>& out) const {
  EncodeScratch scratch;
  if (!parse_special) {
    encode_ordinary(text, out, scratch);
    return;
  }
  size_t plain_begin = 0;
  for (size_t pos = 0; pos < text.size();) {
    int32_t id = -1;
    const size_t len = trie_first_byte_[static_cast<uint8_t>(text[pos])] ? match_added(text, pos, id) : 0;
    if (len == 0) { ++pos; continue; }
    encode_ordinary(text.substr(plain_begin, pos - plain_begin), out, scratch);
    out.push_back(id);
    pos += len;
    plain_begin = pos;
  }
  encode_ordinary(text.substr(plain_begin), out, scratch);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  encode_append(text, parse_special, out);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) out += token_bytes(id);
  return out;
}

std::optional<size_t> Tokenizer::find_invalid_id(std::span<const int32_t> ids) const {
  for (size_t i = 0; i < ids.size(); ++i)
    if (!is_valid_id(ids[i])) return i;
  return std::nullopt;
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  const auto it = by_bytes_.find(std::string(text));
  if (it == by_bytes_.end()) return std::nullopt;
  return it->second;
}

}  // namespace ds4
