// Exact replay of generated turns (engine/prompt_tokens.h, ToolCallReplay::remember_turn): piecewise
// tokenization at the generated spans equals tokenizing the whole prompt; a remembered turn is
// spliced in as the sampled ids when its text matches exactly (so a resent conversation tokenizes
// to what the engine computed) and ignored when it does not; the turn-token LRU is bounded.
#include <gtest/gtest.h>

#include "engine/chat_template.h"
#include "engine/prompt_tokens.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_tables.h"

namespace ds4 {
namespace {

const Tokenizer& tok() {
  static const Tokenizer t(load_tokenizer_tables(std::string(DS4_BINARY_DIR) + "/data/tokenizer"));
  return t;
}

std::vector<ChatMessage> conversation() {
  std::vector<ChatMessage> m;
  m.push_back({"system", "You are terse."});
  m.push_back({"user", "What is the weather in Paris?"});
  ChatMessage a{"assistant", "Let me check."};
  a.reasoning_content = "The user wants weather.";
  a.tool_calls.push_back(ToolCall{"call_1", "get_weather", R"({"city":"Paris"})"});
  m.push_back(a);
  ChatMessage t{"tool", "sunny, 21 C"};
  t.tool_call_id = "call_1";
  m.push_back(t);
  m.push_back({"assistant", "It is sunny."});
  m.push_back({"user", "Thanks!"});
  return m;
}

const std::vector<std::string> kTools = {
    R"({"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}})"};

ChatRenderResult render(ReasoningEffort effort, ToolCallReplay* replay = nullptr) {
  ChatRenderOptions o;
  o.effort = effort;
  o.replay = replay;
  const std::vector<ChatMessage> m = conversation();
  ChatRenderResult r = render_chat_prompt(m, kTools, o);
  EXPECT_TRUE(r.ok) << r.error;
  return r;
}

TEST(PromptTokens, SpansCoverGeneratedTurnsAndPiecewiseEqualsWhole) {
  for (ReasoningEffort effort : {ReasoningEffort::kHigh, ReasoningEffort::kNone}) {
    const ChatRenderResult r = render(effort);
    ASSERT_EQ(r.generated_spans.size(), 2u);
    for (const auto& [b, e] : r.generated_spans) {
      const std::string span = r.prompt.substr(b, e - b);
      EXPECT_EQ(span.substr(span.size() - std::string("<｜end▁of▁sentence｜>").size()), "<｜end▁of▁sentence｜>");
      const std::string before = r.prompt.substr(0, b);
      EXPECT_TRUE(before.ends_with("<think>") || before.ends_with("</think>")) << before;
    }
    ToolCallReplay replay;  // empty: every span is encoded
    EXPECT_EQ(tokenize_chat_prompt(tok(), r, &replay).ids, tok().encode(r.prompt, true));
    // Each span's text encoded alone is what encoding the whole gives there.
    std::vector<int32_t> pieces;
    size_t pos = 0;
    for (const auto& [b, e] : r.generated_spans) {
      tok().encode_append(std::string_view(r.prompt).substr(pos, b - pos), true, pieces);
      tok().encode_append(std::string_view(r.prompt).substr(b, e - b), true, pieces);
      pos = e;
    }
    tok().encode_append(std::string_view(r.prompt).substr(pos), true, pieces);
    EXPECT_EQ(pieces, tok().encode(r.prompt, true));
  }
}

TEST(PromptTokens, RememberedTurnIsReplayedExactly) {
  ToolCallReplay replay;
  const ChatRenderResult r = render(ReasoningEffort::kHigh);
  const auto [b, e] = r.generated_spans[1];
  const std::string span = r.prompt.substr(b, e - b);  // "</think>It is sunny.<eos>" (reasoning kept: tools)
  // A non-canonical tokenization of the same text, as a model may sample it: one byte at a time
  // for the visible text.
  std::vector<int32_t> sampled;
  for (int32_t id : tok().encode(span, true)) {
    const std::string& bytes = tok().token_bytes(id);
    if (bytes.size() > 1 && bytes.find("<") == std::string::npos)
      for (char c : bytes) tok().encode_append(std::string(1, c), false, sampled);
    else
      sampled.push_back(id);
  }
  ASSERT_NE(sampled, tok().encode(span, true));
  std::vector<int32_t> entry(sampled.begin(), sampled.end() - 1);  // the generation ended by length: no EOS
  std::string text;
  ASSERT_TRUE(generated_turn_entry(tok(), entry, text));
  EXPECT_EQ(text, span);
  EXPECT_EQ(entry, sampled);
  replay.remember_turn(text, entry);

  const PromptTokens replayed = tokenize_chat_prompt(tok(), r, &replay);
  EXPECT_EQ(replayed.replayed_turns, 1);
  EXPECT_EQ(tok().decode(replayed.ids), r.prompt);
  const std::vector<int32_t> head = tok().encode(std::string_view(r.prompt).substr(0, b), true);
  ASSERT_GE(replayed.ids.size(), head.size() + sampled.size());
  EXPECT_TRUE(std::equal(head.begin(), head.end(), replayed.ids.begin()));
  EXPECT_TRUE(std::equal(sampled.begin(), sampled.end(), replayed.ids.begin() + static_cast<ptrdiff_t>(head.size())));

  // A different text (reasoning dropped: no tools) does not match the remembered turn.
  ChatRenderOptions o;
  const std::vector<ChatMessage> m = conversation();
  const ChatRenderResult no_tools = render_chat_prompt(m, {}, o);
  EXPECT_EQ(tokenize_chat_prompt(tok(), no_tools, &replay).replayed_turns, 0);
}

TEST(PromptTokens, TurnReplayIsBounded) {
  ToolCallReplay replay(/*max_entries=*/3, /*max_bytes=*/1000);
  for (int i = 0; i < 10; ++i) replay.remember_turn("turn " + std::to_string(i), {i, i + 1});
  EXPECT_EQ(replay.turn_count(), 3u);
  EXPECT_FALSE(replay.lookup_turn("turn 0"));
  EXPECT_EQ(replay.lookup_turn("turn 9"), (std::vector<int32_t>{9, 10}));
  replay.remember_turn(std::string(2000, 'x'), {1});  // larger than the whole budget: ignored
  EXPECT_EQ(replay.turn_count(), 3u);
  EXPECT_LE(replay.turn_bytes(), 1000u);
  EXPECT_EQ(replay.size(), 0u);  // tool-call entries are separate
}

}  // namespace
}  // namespace ds4
