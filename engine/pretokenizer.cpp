// Hand-written pre-tokenizer: decode to units once, then the three Isolated splits as nested
// range walks (a split's matches and the gaps between them both go on to the next split).
#include "engine/pretokenizer.h"

#include "engine/unicode_class.h"

namespace ds4 {
namespace {

using unicode::Major;

bool is_cjk(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FA5) || (cp >= 0x3040 && cp <= 0x30FF);
}
bool is_ascii_letter(char32_t cp) { return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z'; }
bool is_ascii_punct(char32_t cp) {
  return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
         (cp >= 0x7B && cp <= 0x7E);
}
bool is_crlf(char32_t cp) { return cp == '\r' || cp == '\n'; }

class Splitter {
 public:
  Splitter(const PretokUnit* units, PretokenizerFlavor flavor, std::vector<uint32_t>& ends)
      : u_(units), flavor_(flavor), ends_(ends) {}

  void run(size_t end) { split_digits(0, end); }

 private:
  Major major(size_t i) const { return unicode::major_of(u_[i].cls); }
  bool letter_or_mark(size_t i) const { return major(i) == Major::kLetter || major(i) == Major::kMark; }
  bool punct_or_symbol(size_t i) const { return major(i) == Major::kPunct || major(i) == Major::kSymbol; }
  bool space(size_t i) const {
    return u_[i].cls & (flavor_ == PretokenizerFlavor::kHfRegex ? unicode::kWhiteSpaceBit
                                                                : unicode::kPySpaceBit);
  }

  // Split 1: \p{N}{1,3}.
  void split_digits(size_t b, size_t e) {
    size_t gap = b;
    for (size_t i = b; i < e;) {
      if (major(i) != Major::kNumber) { ++i; continue; }
      size_t j = i;
      while (j < e && j - i < 3 && major(j) == Major::kNumber) ++j;
      if (gap < i) split_cjk(gap, i);
      split_cjk(i, j);
      i = gap = j;
    }
    if (gap < e) split_cjk(gap, e);
  }

  // Split 2: runs of CJK ideographs / kana.
  void split_cjk(size_t b, size_t e) {
    size_t gap = b;
    for (size_t i = b; i < e;) {
      if (!is_cjk(u_[i].cp)) { ++i; continue; }
      size_t j = i;
      while (j < e && is_cjk(u_[j].cp)) ++j;
      if (gap < i) split_words(gap, i);
      split_words(i, j);
      i = gap = j;
    }
    if (gap < e) split_words(gap, e);
  }

  // Split 3: the word / punctuation / whitespace alternatives.
  void split_words(size_t b, size_t e) {
    size_t gap = b;
    for (size_t i = b; i < e;) {
      const size_t j = match_word(i, e);
      if (j == i) { ++i; continue; }
      if (gap < i) emit(i);
      emit(j);
      i = gap = j;
    }
    if (gap < e) emit(e);
  }

  void emit(size_t end) { ends_.push_back(u_[end].offset); }

  size_t letter_run(size_t j, size_t e) const {
    while (j < e && letter_or_mark(j)) ++j;
    return j;
  }

  // End of the longest-priority match of split 3 starting at i, or i when nothing matches.
  size_t match_word(size_t i, size_t e) const {
    const char32_t cp = u_[i].cp;
    // [ASCII punct][A-Za-z]+
    if (is_ascii_punct(cp) && i + 1 < e && is_ascii_letter(u_[i + 1].cp)) {
      size_t j = i + 2;
      while (j < e && is_ascii_letter(u_[j].cp)) ++j;
      return j;
    }
    // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
    if (letter_or_mark(i)) return letter_run(i, e);
    if (!is_crlf(cp) && !punct_or_symbol(i) && i + 1 < e && letter_or_mark(i + 1))
      return letter_run(i + 1, e);
    // ' '?[\p{P}\p{S}]+[\r\n]*
    size_t j = (cp == ' ' && i + 1 < e && punct_or_symbol(i + 1)) ? i + 1 : i;
    if (punct_or_symbol(j)) {
      while (j < e && punct_or_symbol(j)) ++j;
      while (j < e && is_crlf(u_[j].cp)) ++j;
      return j;
    }
    if (!space(i)) return i;
    size_t run_end = i;
    while (run_end < e && space(run_end)) ++run_end;
    return flavor_ == PretokenizerFlavor::kHfRegex ? match_space_regex(i, run_end, e)
                                                   : match_space_package(i, run_end, e);
  }

  // \s*[\r\n]+ | \s+(?!\S) | \s+ with backtracking: through the last CR/LF of the run; else the
  // run, minus its last char when a non-space follows and the run is longer than one.
  size_t match_space_regex(size_t i, size_t run_end, size_t e) const {
    for (size_t k = run_end; k > i; --k)
      if (is_crlf(u_[k - 1].cp)) return k;
    if (run_end == e || run_end - i == 1) return run_end;
    return run_end - 1;
  }

  // py_tokenizer.py: through the first CR/LF and the CR/LF run after it; else the whole run.
  size_t match_space_package(size_t i, size_t run_end, size_t e) const {
    for (size_t k = i; k < run_end; ++k) {
      if (!is_crlf(u_[k].cp)) continue;
      while (k < e && is_crlf(u_[k].cp)) ++k;
      return k;
    }
    return run_end;
  }

  const PretokUnit* u_;
  PretokenizerFlavor flavor_;
  std::vector<uint32_t>& ends_;
};

}  // namespace

void pretokenize(std::string_view text, PretokenizerFlavor flavor, PretokScratch& scratch) {
  auto& units = scratch.units;
  units.clear();
  scratch.piece_ends.clear();
  for (size_t i = 0; i < text.size();) {
    const unicode::Utf8Unit d = unicode::decode_utf8(text.data() + i, text.size() - i);
    units.push_back({static_cast<uint32_t>(i), d.cp, unicode::char_class(d.cp)});
    i += d.length;
  }
  const size_t num_units = units.size();
  units.push_back({static_cast<uint32_t>(text.size()), 0, 0});
  Splitter(units.data(), flavor, scratch.piece_ends).run(num_units);
}

}  // namespace ds4
