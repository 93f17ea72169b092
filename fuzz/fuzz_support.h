// Helpers shared by the libFuzzer targets in fuzz/: a reader that splits one fuzz input into
// choices and pieces, the shipped tokenizer (loaded once from the build tree), and the check that
// turns a violated property into a crash libFuzzer records. Header-only; fuzz targets only.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_tables.h"

namespace ds4::fuzz {

// A property the target checks does not hold: print it and abort (libFuzzer saves the input).
[[noreturn]] inline void fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz property violated: %s\n%.*s\n", what, int(detail.size() > 2000 ? 2000 : detail.size()),
               detail.data());
  std::abort();
}

// Consumes a fuzz input front to back: small integers for choices, then lengths of pieces.
class FuzzReader {
 public:
  FuzzReader(const uint8_t* data, size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}
  uint8_t byte() {
    if (rest_.empty()) return 0;
    const uint8_t b = static_cast<uint8_t>(rest_.front());
    rest_.remove_prefix(1);
    return b;
  }
  // The next piece: a length byte (1..max_len) then that many bytes (fewer at the end).
  std::string_view piece(size_t max_len) {
    const size_t want = 1 + byte() % max_len;
    const size_t n = want < rest_.size() ? want : rest_.size();
    const std::string_view out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return out;
  }
  std::string_view rest() const { return rest_; }
  bool empty() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

// The text with every ill-formed UTF-8 byte replaced by U+FFFD, as the streaming detokenizer
// hands text on (the parsers behind it are only ever fed valid UTF-8).
inline std::string to_valid_utf8(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<uint8_t>(text[i]);
    const size_t len = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    if (i + len <= text.size() && gguf_is_valid_utf8(text.substr(i, len))) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return out;
}

// Moves a cut position forward to the next character boundary of valid UTF-8 text.
inline size_t utf8_boundary(std::string_view text, size_t pos) {
  while (pos < text.size() && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80) ++pos;
  return pos;
}

// The DeepSeek V4 tokenizer from the tables unpacked into the build tree at configure time.
inline const Tokenizer& shipped_tokenizer() {
  static const Tokenizer tokenizer(load_tokenizer_tables(DS4_TOKENIZER_DIR));
  return tokenizer;
}

}  // namespace ds4::fuzz
