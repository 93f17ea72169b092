// Streaming detokenizer: complete UTF-8 only, think-tag split (thinking and non-thinking
// prompts), stop strings across token boundaries (excluded, held back while still possible),
// control tokens hidden, finish flush. Uses the shipped tokenizer tables.
#include "engine/detokenizer.h"

#include <gtest/gtest.h>

namespace ds4 {
namespace {

const Tokenizer& tok() {
  static const Tokenizer t(load_tokenizer_tables(std::string(DS4_BINARY_DIR) + "/data/tokenizer"));
  return t;
}

struct Detokenized {
  std::vector<DetokenizerOutput> steps;  // output after each token
  DetokenizerOutput total;               // everything, including finish()
};

Detokenized run(const std::vector<int32_t>& ids, DetokenizerOptions options) {
  StreamingDetokenizer d(tok(), std::move(options));
  Detokenized r;
  for (int32_t id : ids) {
    DetokenizerOutput step;
    d.push(id, step);
    r.total.reasoning += step.reasoning;
    r.total.content += step.content;
    r.total.stopped |= step.stopped;
    if (step.stopped) r.total.stop_index = step.stop_index;
    r.steps.push_back(step);
  }
  DetokenizerOutput last;
  d.finish(last);
  r.total.reasoning += last.reasoning;
  r.total.content += last.content;
  return r;
}

std::vector<int32_t> ids_of(std::string_view text, bool special = true) { return tok().encode(text, special); }

TEST(Detokenizer, EmitsOnlyCompleteUtf8) {
  const std::vector<int32_t> ids = {28927, 225};  // the two byte-level tokens of U+1F600
  const Detokenized r = run(ids, {});
  EXPECT_EQ(r.steps[0].content, "");
  EXPECT_EQ(r.steps[1].content, "\xF0\x9F\x98\x80");
  // Cut short: the incomplete character is flushed as U+FFFD at the end.
  const Detokenized cut = run({28927}, {});
  EXPECT_EQ(cut.total.content, "\xEF\xBF\xBD");
}

TEST(Detokenizer, PlainContentRoundTrips) {
  const std::string text = "Hello, world! 你好 <b>tags</b> and </thin words\n";
  const Detokenized r = run(ids_of(text), {});
  EXPECT_EQ(r.total.content, text);
  EXPECT_EQ(r.total.reasoning, "");
  EXPECT_FALSE(r.total.stopped);
}

TEST(Detokenizer, ControlTokensAreHidden) {
  std::vector<int32_t> ids = {tok().chat_ids().bos};
  for (int32_t id : ids_of("hi")) ids.push_back(id);
  ids.push_back(tok().chat_ids().eos);
  EXPECT_EQ(run(ids, {}).total.content, "hi");
}

TEST(Detokenizer, ThinkTagsShowEvenWhenMarkedAsControl) {
  TokenizerTables tables = load_tokenizer_tables(std::string(DS4_BINARY_DIR) + "/data/tokenizer");
  tables.types[static_cast<size_t>(tok().chat_ids().think_end)] = 3;  // as some GGUF converters do
  const Tokenizer strict(tables);
  StreamingDetokenizer d(strict, DetokenizerOptions{true, {}, false});
  DetokenizerOutput out;
  for (int32_t id : strict.encode("why</think>because", true)) d.push(id, out);
  d.finish(out);
  EXPECT_EQ(out.reasoning, "why");
  EXPECT_EQ(out.content, "because");
}

TEST(Detokenizer, ThinkingModeSplitsReasoningFromContent) {
  DetokenizerOptions options;
  options.thinking = true;
  // </think> as the special token, and spelled out in ordinary tokens.
  for (bool special : {true, false}) {
    const Detokenized r = run(ids_of("Let me think. 2+2=4.</think>The answer is 4.", special), options);
    EXPECT_EQ(r.total.reasoning, "Let me think. 2+2=4.") << special;
    EXPECT_EQ(r.total.content, "The answer is 4.") << special;
  }
  // A repeated opening tag at the start of reasoning is dropped.
  const Detokenized again = run(ids_of("<think>hmm</think>ok"), options);
  EXPECT_EQ(again.total.reasoning, "hmm");
  EXPECT_EQ(again.total.content, "ok");
  // Never closed: everything is reasoning.
  EXPECT_EQ(run(ids_of("still thinking"), options).total.reasoning, "still thinking");
}

TEST(Detokenizer, NonThinkingPromptButModelOpensThinking) {
  const Detokenized r = run(ids_of("<think>x</think>y"), {});
  EXPECT_EQ(r.total.reasoning, "x");
  EXPECT_EQ(r.total.content, "y");
  const Detokenized later = run(ids_of("a<think>b"), {});  // not at the start: plain content
  EXPECT_EQ(later.total.content, "a<think>b");
}

TEST(Detokenizer, StopStringsMatchAcrossTokensAndAreExcluded) {
  DetokenizerOptions options;
  options.stop = {"", "world peace", "STOP"};
  const std::vector<int32_t> ids = ids_of("Hello world. Now STOP here");
  const Detokenized r = run(ids, options);
  EXPECT_TRUE(r.total.stopped);
  EXPECT_EQ(r.total.stop_index, 2);
  EXPECT_EQ(r.total.content, "Hello world. Now ");
  // " world" could still become "world peace": it is held until "." rules that out.
  std::string seen;
  for (size_t i = 0; i < r.steps.size(); ++i) {
    seen += r.steps[i].content;
    if (tok().decode(std::vector<int32_t>(ids.begin(), ids.begin() + i + 1)) == "Hello world") {
      EXPECT_EQ(seen, "Hello ");
    }
  }
  // A stop split over several single-character tokens.
  options.stop = {"<END>"};
  std::vector<int32_t> pieces;
  for (char c : std::string("ab<END>cd")) pieces.push_back(ids_of(std::string(1, c))[0]);
  const Detokenized split = run(pieces, options);
  EXPECT_EQ(split.total.content, "ab");
  EXPECT_TRUE(split.total.stopped);
}

TEST(Detokenizer, HeldTextIsFlushedAtFinish) {
  DetokenizerOptions options;
  options.stop = {"world peace"};
  const Detokenized r = run(ids_of("Hello world"), options);
  EXPECT_FALSE(r.total.stopped);
  EXPECT_EQ(r.total.content, "Hello world");
}

TEST(Detokenizer, StopStringsSkipReasoningUnlessAsked) {
  DetokenizerOptions options;
  options.thinking = true;
  options.stop = {"STOP"};
  Detokenized r = run(ids_of("do not STOP yet</think>answer STOP x"), options);
  EXPECT_EQ(r.total.reasoning, "do not STOP yet");
  EXPECT_EQ(r.total.content, "answer ");
  EXPECT_TRUE(r.total.stopped);
  options.stop_in_reasoning = true;
  r = run(ids_of("do not STOP yet</think>answer"), options);
  EXPECT_EQ(r.total.reasoning, "do not ");
  EXPECT_EQ(r.total.content, "");
  EXPECT_TRUE(r.total.stopped);
}

TEST(Detokenizer, IgnoresTokensAfterStop) {
  DetokenizerOptions options;
  options.stop = {"x"};
  StreamingDetokenizer d(tok(), options);
  DetokenizerOutput out;
  for (int32_t id : ids_of("ax")) d.push(id, out);
  EXPECT_TRUE(d.stopped());
  for (int32_t id : ids_of("more")) d.push(id, out);
  d.finish(out);
  EXPECT_EQ(out.content, "a");
}

}  // namespace
}  // namespace ds4
