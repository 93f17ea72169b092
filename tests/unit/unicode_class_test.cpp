// Unicode classes (Unicode 16.0 tables) and the never-failing UTF-8 decoder.
#include "engine/unicode_class.h"

#include <gtest/gtest.h>

namespace ds4::unicode {
namespace {

Major major(char32_t cp) { return major_of(char_class(cp)); }

TEST(UnicodeClass, GeneralCategories) {
  EXPECT_EQ(major('A'), Major::kLetter);
  EXPECT_EQ(major(U'é'), Major::kLetter);
  EXPECT_EQ(major(U'中'), Major::kLetter);
  EXPECT_EQ(major(0x0301), Major::kMark);   // combining acute
  EXPECT_EQ(major('7'), Major::kNumber);
  EXPECT_EQ(major(U'²'), Major::kNumber);   // No
  EXPECT_EQ(major(U'٣'), Major::kNumber);   // Nd, Arabic-Indic
  EXPECT_EQ(major('!'), Major::kPunct);
  EXPECT_EQ(major(U'、'), Major::kPunct);
  EXPECT_EQ(major('$'), Major::kSymbol);
  EXPECT_EQ(major(U'😀'), Major::kSymbol);
  EXPECT_EQ(major(' '), Major::kOther);     // Zs
  EXPECT_EQ(major(0x200B), Major::kOther);  // Cf
  EXPECT_EQ(major(0xE000), Major::kOther);  // Co
  EXPECT_EQ(major(0x110000), Major::kOther);
}

TEST(UnicodeClass, TablesAreUnicode16) {
  EXPECT_EQ(major(0x11380), Major::kLetter);  // Tulu-Tigalari, new in 16.0
  EXPECT_EQ(major(0x1CC00), Major::kSymbol);  // Legacy Computing Supplement, 16.0
  EXPECT_EQ(major(0x1E6C0), Major::kOther);   // Tai Yo, only in 17.0
}

TEST(UnicodeClass, WhitespaceFlags) {
  for (char32_t cp : {U'\t', U'\n', U'\v', U'\f', U'\r', U' ', char32_t{0x85}, char32_t{0xA0}, char32_t{0x3000}, char32_t{0x2028}}) {
    EXPECT_TRUE(char_class(cp) & kWhiteSpaceBit) << std::hex << uint32_t(cp);
    EXPECT_TRUE(char_class(cp) & kPySpaceBit) << std::hex << uint32_t(cp);
  }
  for (char32_t cp = 0x1C; cp <= 0x1F; ++cp) {  // Python isspace only
    EXPECT_FALSE(char_class(cp) & kWhiteSpaceBit);
    EXPECT_TRUE(char_class(cp) & kPySpaceBit);
  }
  for (char32_t cp : {char32_t{0x180E}, char32_t{0x200B}, char32_t{0xFEFF}}) EXPECT_EQ(char_class(cp) & 0x18, 0);
}

TEST(Utf8, DecodesWellFormedSequences) {
  const std::string s = "a\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80";
  Utf8Unit u = decode_utf8(s.data(), s.size());
  EXPECT_TRUE(u.valid && u.cp == 'a' && u.length == 1);
  u = decode_utf8(s.data() + 1, s.size() - 1);
  EXPECT_TRUE(u.valid && u.cp == 0xE9 && u.length == 2);
  u = decode_utf8(s.data() + 3, s.size() - 3);
  EXPECT_TRUE(u.valid && u.cp == 0x4E2D && u.length == 3);
  u = decode_utf8(s.data() + 6, s.size() - 6);
  EXPECT_TRUE(u.valid && u.cp == 0x1F600 && u.length == 4);
  EXPECT_TRUE(is_valid_utf8(s));
}

TEST(Utf8, IllFormedBytesAreSingleUnits) {
  for (std::string bad : {"\x80", "\xC0\x80", "\xC1\xBF", "\xE0\x80\x80", "\xED\xA0\x80",
                          "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFF", "\xE4\xB8", "\xF0\x9F\x98"}) {
    const Utf8Unit u = decode_utf8(bad.data(), bad.size());
    EXPECT_FALSE(u.valid);
    EXPECT_EQ(u.length, 1);
    EXPECT_EQ(u.cp, 0xDC00u + static_cast<unsigned char>(bad[0]));
    EXPECT_EQ(char_class(u.cp), 0);
    EXPECT_FALSE(is_valid_utf8(bad));
  }
}

TEST(Utf8, CompletePrefixHoldsOnlyCompletableTails) {
  EXPECT_EQ(complete_utf8_prefix("abc"), 3u);
  EXPECT_EQ(complete_utf8_prefix("ab\xE4"), 2u);
  EXPECT_EQ(complete_utf8_prefix("ab\xE4\xB8"), 2u);
  EXPECT_EQ(complete_utf8_prefix("ab\xE4\xB8\xAD"), 5u);
  EXPECT_EQ(complete_utf8_prefix("\xF0\x9F\x98"), 0u);
  EXPECT_EQ(complete_utf8_prefix("a\xE0\x80"), 3u);  // E0 80 can never be valid: emit now
  EXPECT_EQ(complete_utf8_prefix("a\xED\xA0"), 3u);  // would be a surrogate
  EXPECT_EQ(complete_utf8_prefix("a\xFF"), 2u);
  EXPECT_EQ(complete_utf8_prefix("a\x80"), 2u);
  EXPECT_EQ(complete_utf8_prefix(""), 0u);
}

TEST(Utf8, LossyReplacementUsesMaximalSubparts) {
  // Expected values are Python's bytes.decode("utf-8", "replace").
  auto lossy = [](std::string_view s) {
    std::string out;
    append_utf8_lossy(s, out);
    return out;
  };
  EXPECT_EQ(lossy("ok\xC3\xA9"), "ok\xC3\xA9");
  EXPECT_EQ(lossy("\xE2\x82" "A"), "\xEF\xBF\xBD" "A");
  EXPECT_EQ(lossy("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(lossy("\xC0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(lossy("\xE0\xA0" "x\xFF"), "\xEF\xBF\xBD" "x\xEF\xBF\xBD");
  EXPECT_TRUE(is_valid_utf8(lossy("\x80\x81\xFE\xF4\x8F\xBF")));
}

}  // namespace
}  // namespace ds4::unicode
