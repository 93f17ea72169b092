// AssistantStream: tokens of a thinking-mode generation with a tool call come out as ordered
// reasoning / content / tool call events; DSML inside reasoning stays reasoning; stops end it.
#include "engine/assistant_stream.h"

#include <gtest/gtest.h>

namespace ds4 {
namespace {

const Tokenizer& tok() {
  static const Tokenizer t(load_tokenizer_tables(std::string(DS4_BINARY_DIR) + "/data/tokenizer"));
  return t;
}

std::vector<AssistantEvent> run(AssistantStream& s, std::string_view generated) {
  std::vector<AssistantEvent> events;
  for (int32_t id : tok().encode(generated, true)) {
    s.push(id, events);
    if (s.stopped()) break;
  }
  s.finish(events);
  return events;
}

constexpr const char* kToolTurn =
    "I should call <｜DSML｜tool_calls> the tool.</think>Checking.\n\n<｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"location\" string=\"true\">Paris"
    "</｜DSML｜parameter>\n<｜DSML｜parameter name=\"days\" string=\"false\">3</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>";

TEST(AssistantStream, ThinkingTurnWithToolCall) {
  AssistantStreamOptions options;
  options.thinking = true;
  options.parse_tool_calls = true;
  options.tool_id_seed = 99;
  AssistantStream s(tok(), options);
  const std::vector<AssistantEvent> events = run(s, kToolTurn);
  const AssistantMessage& m = s.message();
  EXPECT_EQ(m.reasoning, "I should call <｜DSML｜tool_calls> the tool.");  // not parsed in reasoning
  EXPECT_EQ(m.content, "Checking.");
  ASSERT_EQ(m.tool_calls.size(), 1u);
  EXPECT_EQ(m.tool_calls[0].name, "get_weather");
  EXPECT_EQ(m.tool_calls[0].arguments, R"({"location":"Paris","days":3})");
  EXPECT_EQ(m.raw_dsml.rfind("\n\n<｜DSML｜tool_calls>", 0), 0u);
  // Events come in order: all reasoning, then content, then the call; deltas rebuild the message.
  std::string reasoning, content, args;
  int phase = 0;
  for (const AssistantEvent& e : events) {
    const int p = e.kind == AssistantEvent::Kind::kReasoning ? 0 : e.kind == AssistantEvent::Kind::kContent ? 1 : 2;
    EXPECT_GE(p, phase);
    phase = p;
    if (e.kind == AssistantEvent::Kind::kReasoning) reasoning += e.text;
    if (e.kind == AssistantEvent::Kind::kContent) content += e.text;
    if (e.kind == AssistantEvent::Kind::kToolCallArguments) args += e.text;
    if (e.kind == AssistantEvent::Kind::kToolCallStart) {
      EXPECT_EQ(e.text, "get_weather");
      EXPECT_EQ(e.id, m.tool_calls[0].id);
    }
  }
  EXPECT_EQ(reasoning, m.reasoning);
  EXPECT_EQ(content, m.content);
  EXPECT_EQ(args, m.tool_calls[0].arguments);
}

TEST(AssistantStream, WithoutToolsDsmlIsPlainContent) {
  AssistantStreamOptions options;
  options.thinking = true;
  AssistantStream s(tok(), options);
  run(s, kToolTurn);
  EXPECT_TRUE(s.message().tool_calls.empty());
  EXPECT_NE(s.message().content.find("<｜DSML｜invoke name=\"get_weather\">"), std::string::npos);
}

TEST(AssistantStream, StopStringEndsTheMessage) {
  AssistantStreamOptions options;
  options.stop = {"\n\n"};
  AssistantStream s(tok(), options);
  run(s, "First paragraph.\n\nSecond paragraph.");
  EXPECT_TRUE(s.stopped());
  EXPECT_TRUE(s.message().stopped_by_string);
  EXPECT_EQ(s.message().stop_index, 0);
  EXPECT_EQ(s.message().content, "First paragraph.");
}

TEST(AssistantStream, MalformedBlockBecomesContentWithWarning) {
  AssistantStreamOptions options;
  options.parse_tool_calls = true;
  AssistantStream s(tok(), options);
  const std::vector<AssistantEvent> events = run(s, "Try:\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\noops");
  EXPECT_TRUE(s.message().tool_calls.empty());
  EXPECT_EQ(s.message().content, "Try:\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\noops");
  ASSERT_EQ(s.message().warnings.size(), 1u);
  bool warned = false;
  for (const AssistantEvent& e : events) warned |= e.kind == AssistantEvent::Kind::kWarning;
  EXPECT_TRUE(warned);
}

}  // namespace
}  // namespace ds4
