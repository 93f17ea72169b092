// Tokenizer: chat token ids, known encodings (ids from HF tokenizers on tokenizer.json), special
// token parsing on/off, byte round trip for arbitrary bytes, and load-time validation.
// Uses the shipped tables unpacked into the build tree (DS4_BINARY_DIR/data/tokenizer).
#include "engine/tokenizer.h"

#include <gtest/gtest.h>

#include <random>

#include "engine/load_error.h"

namespace ds4 {
namespace {

const TokenizerTables& tables() {
  static const TokenizerTables t = load_tokenizer_tables(std::string(DS4_BINARY_DIR) + "/data/tokenizer");
  return t;
}

const Tokenizer& tok() {
  static const Tokenizer t(tables());
  return t;
}

using Ids = std::vector<int32_t>;

TEST(Tokenizer, ChatTokenIds) {
  const ChatTokenIds& ids = tok().chat_ids();
  EXPECT_EQ(ids.bos, 0);
  EXPECT_EQ(ids.eos, 1);
  EXPECT_EQ(ids.user, 128803);
  EXPECT_EQ(ids.assistant, 128804);
  EXPECT_EQ(ids.think_begin, 128821);
  EXPECT_EQ(ids.think_end, 128822);
  EXPECT_EQ(ids.dsml, 128825);
  EXPECT_EQ(tok().vocab_size(), 129280);
  EXPECT_TRUE(tok().is_control(ids.eos));
  EXPECT_FALSE(tok().is_control(ids.think_end));
  EXPECT_TRUE(tok().is_added(ids.think_end));
}

TEST(Tokenizer, KnownEncodings) {
  EXPECT_EQ(tok().encode("hello world", true), (Ids{33310, 2058}));
  EXPECT_EQ(tok().encode("   x", true), (Ids{262, 1527}));
  EXPECT_EQ(tok().encode("你好，世界！", true), (Ids{30594, 303, 3427, 1175}));
  EXPECT_EQ(tok().encode("\xF0\x9F\x98\x80", true), (Ids{28927, 225}));
  EXPECT_EQ(tok().encode("<｜User｜>Hi<｜Assistant｜></think>", true), (Ids{128803, 23166, 128804, 128822}));
  // Closing DSML tags split as "</" + ｜DSML｜ + ... ; <tool_result> is ordinary text.
  EXPECT_EQ(tok().encode("</｜DSML｜invoke>", true), (Ids{1718, 128825, 40148, 5406, 32}));
  EXPECT_EQ(tok().encode("<tool_result>ok</tool_result>", true),
            (Ids{30, 72461, 46148, 32, 633, 1718, 72461, 46148, 32}));
  EXPECT_TRUE(tok().encode("", true).empty());
}

TEST(Tokenizer, SpecialTokensOnlyWhenParsingIsOn) {
  const std::string text = "a<｜User｜>b<think>";
  const Ids with = tok().encode(text, true);
  const Ids without = tok().encode(text, false);
  EXPECT_NE(std::find(with.begin(), with.end(), 128803), with.end());
  for (int32_t id : without) EXPECT_FALSE(tok().is_added(id)) << id;
  EXPECT_EQ(tok().decode(with), text);
  EXPECT_EQ(tok().decode(without), text);
  // Longest match wins: "<｜DSML｜..." is "<" then the ｜DSML｜ token, not a partial match.
  EXPECT_EQ(tok().encode("<｜DSML｜", true), (Ids{30, 128825}));
}

TEST(Tokenizer, TokenBytesAndText) {
  EXPECT_EQ(tok().token_bytes(tok().chat_ids().user), "<｜User｜>");
  EXPECT_EQ(tok().token_text(2058), "Ġworld");
  EXPECT_EQ(tok().token_bytes(2058), " world");
  EXPECT_EQ(tok().find_token(" world"), 2058);
  EXPECT_EQ(tok().find_token("</think>"), 128822);
  EXPECT_FALSE(tok().find_token("no such token text").has_value());
  const Ids ids = {5, -1, 2};
  EXPECT_EQ(tok().find_invalid_id(ids), 1u);
  EXPECT_FALSE(tok().find_invalid_id(Ids{0, 129279}).has_value());
  EXPECT_EQ(tok().find_invalid_id(Ids{129280}), 0u);
}

TEST(Tokenizer, RoundTripsArbitraryBytes) {
  std::mt19937 rng(11);
  for (int iter = 0; iter < 3000; ++iter) {
    std::string s(rng() % 64, '\0');
    for (char& c : s) c = static_cast<char>(rng() % 3 ? " ae\n\t1<|>\xE4\xB8\xAD"[rng() % 13] : rng() % 256);
    for (bool special : {true, false}) {
      const Ids ids = tok().encode(s, special);
      ASSERT_EQ(tok().decode(ids), s);
      for (int32_t id : ids) ASSERT_TRUE(tok().is_valid_id(id));
    }
  }
}

TEST(Tokenizer, PackageFlavourDiffersOnlyInWhitespace) {
  const Tokenizer py(tables(), PretokenizerFlavor::kPyPackage);
  EXPECT_EQ(py.encode("   x", true), (Ids{361, 90}));
  EXPECT_EQ(py.encode("hello world", true), tok().encode("hello world", true));
}

TEST(Tokenizer, RejectsInconsistentTables) {
  TokenizerTables t = tables();
  t.types.pop_back();
  EXPECT_THROW({ Tokenizer bad(t); }, LoadError);

  t = tables();
  t.merges.push_back("Ġworld nonexistent_token_xyz");
  try {
    Tokenizer bad(t);
    FAIL() << "expected LoadError";
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find("nonexistent_token_xyz"), std::string::npos);
  }

  t = tables();
  t.merges.push_back("nospace");
  EXPECT_THROW({ Tokenizer bad(t); }, LoadError);

  t = tables();
  for (auto& s : t.tokens)
    if (s == "Ā") s = "Ā_renamed";  // the token of byte 0
  EXPECT_THROW({ Tokenizer bad(t); }, LoadError);

  t = tables();
  t.types[128803] = 1;  // <｜User｜> no longer an added token
  EXPECT_THROW({ Tokenizer bad(t); }, LoadError);
}

}  // namespace
}  // namespace ds4
