// DSML: canonical rendering (official encoder layout), parsing of generated text (string vs JSON
// parameters, escapes, nested objects, several invokes, block-start variants, content before the
// block), malformed/unterminated fallback, and streaming: any chunking of the input gives the same
// result and events whose deltas concatenate to it.
#include "engine/dsml.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace ds4 {
namespace {

constexpr const char* kOfficialCall =
    "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n"
    "<｜DSML｜parameter name=\"location\" string=\"true\">Beijing</｜DSML｜parameter>\n"
    "<｜DSML｜parameter name=\"unit\" string=\"true\">celsius</｜DSML｜parameter>\n"
    "</｜DSML｜invoke>\n</｜DSML｜tool_calls>";

TEST(DsmlRender, OfficialLayout) {
  const std::vector<ToolCall> calls = {{"c1", "get_weather", R"({"location": "Beijing", "unit": "celsius"})"}};
  EXPECT_EQ(render_dsml_tool_calls(calls), kOfficialCall);
  EXPECT_EQ(render_dsml_tool_calls({}), "");
}

TEST(DsmlRender, ValueKindsAndFallbackArguments) {
  const std::vector<ToolCall> calls = {
      {"a", "f", R"({"n": 1.50, "b": true, "o": {"k": [1, "x"]}, "nil": null, "s": "x\ny"})"},
      {"b", "g", "not json"},
      {"c", "h", "[1, 2]"},
  };
  EXPECT_EQ(render_dsml_tool_calls(calls),
            "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n"
            "<｜DSML｜parameter name=\"n\" string=\"false\">1.5</｜DSML｜parameter>\n"
            "<｜DSML｜parameter name=\"b\" string=\"false\">true</｜DSML｜parameter>\n"
            "<｜DSML｜parameter name=\"o\" string=\"false\">{\"k\": [1, \"x\"]}</｜DSML｜parameter>\n"
            "<｜DSML｜parameter name=\"nil\" string=\"false\">null</｜DSML｜parameter>\n"
            "<｜DSML｜parameter name=\"s\" string=\"true\">x\ny</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
            "<｜DSML｜invoke name=\"g\">\n<｜DSML｜parameter name=\"arguments\" string=\"true\">not json"
            "</｜DSML｜parameter>\n</｜DSML｜invoke>\n"
            "<｜DSML｜invoke name=\"h\">\n<｜DSML｜parameter name=\"arguments\" string=\"true\">[1, 2]"
            "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>");
}

TEST(DsmlParse, OfficialCallWithContentBefore) {
  const ParsedAssistantOutput r = parse_dsml_output(std::string("Let me check.") + kOfficialCall, 1);
  EXPECT_EQ(r.content, "Let me check.");
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].name, "get_weather");
  EXPECT_EQ(r.tool_calls[0].arguments, R"({"location":"Beijing","unit":"celsius"})");
  EXPECT_EQ(r.tool_calls[0].id.size(), 37u);
  EXPECT_EQ(r.tool_calls[0].id.rfind("call_", 0), 0u);
  EXPECT_EQ(r.raw_dsml, kOfficialCall);
  EXPECT_TRUE(r.warnings.empty());
}

TEST(DsmlParse, JsonValuesNestedObjectsAndSeveralInvokes) {
  const std::string text =
      "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"a\">\n"
      "<｜DSML｜parameter name=\"n\" string=\"false\"> 42 </｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"list\" string=\"false\">[1, {\"x\": \"</｜DSML｜parameter\"}]</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"empty\" string=\"false\"></｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"bad\" string=\"false\">{oops</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n<｜DSML｜invoke name=\"b\">\n"
      "<｜DSML｜parameter name=\"obj\">\n  <｜DSML｜parameter name=\"k\" string=\"true\">v</｜DSML｜parameter>\n"
      "  <｜DSML｜parameter name=\"n\" string=\"false\">2</｜DSML｜parameter>\n</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"plain\">untyped text</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n<｜DSML｜invoke name=\"c\">\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  const ParsedAssistantOutput r = parse_dsml_output(text, 2);
  EXPECT_EQ(r.content, "");
  ASSERT_EQ(r.tool_calls.size(), 3u);
  EXPECT_EQ(r.tool_calls[0].arguments,
            R"({"n":42,"list":[1,{"x":"</｜DSML｜parameter"}],"empty":null,"bad":"{oops"})");
  EXPECT_EQ(r.tool_calls[1].arguments, R"({"obj":{"k":"v","n":2},"plain":"untyped text"})");
  EXPECT_EQ(r.tool_calls[2].name, "c");
  EXPECT_EQ(r.tool_calls[2].arguments, "{}");
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("\"bad\""), std::string::npos);
  EXPECT_NE(r.tool_calls[0].id, r.tool_calls[1].id);
}

TEST(DsmlParse, StringValuesAreRawExceptTheEscapedClosingTag) {
  const std::string text =
      "\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"write\">\n"
      "<｜DSML｜parameter name=\"html\" string=\"true\">a &amp; b &lt;p&gt; \"q\" </parameter> "
      "&lt;/｜DSML｜parameter> \\ \n\t end</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  const ParsedAssistantOutput r = parse_dsml_output(text, 3);
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].arguments,
            "{\"html\":\"a &amp; b &lt;p&gt; \\\"q\\\" </parameter> </｜DSML｜parameter> \\\\ \\n\\t end\"}");
}

TEST(DsmlParse, AttributeEntitiesAreDecoded) {
  const ParsedAssistantOutput r = parse_dsml_output(
      "<｜DSML｜tool_calls><｜DSML｜invoke name=\"a&amp;b\"><｜DSML｜parameter name=\"say &quot;hi&quot;\" "
      "string=\"true\">x</｜DSML｜parameter></｜DSML｜invoke></｜DSML｜tool_calls>", 4);
  ASSERT_EQ(r.tool_calls.size(), 1u);
  EXPECT_EQ(r.tool_calls[0].name, "a&b");
  EXPECT_EQ(r.tool_calls[0].arguments, R"({"say \"hi\"":"x"})");
}

TEST(DsmlParse, ToleratedBlockStartVariants) {
  for (const char* text : {
           "Sure.\n\n<DSML｜tool_calls>\n<DSML｜invoke name=\"f\">\n<DSML｜parameter name=\"x\" "
           "string=\"true\">1</DSML｜parameter>\n</DSML｜invoke>\n</DSML｜tool_calls>",
           "Sure.<tool_calls>\n<invoke name=\"f\">\n<parameter name=\"x\" string=\"true\">1</parameter>\n"
           "</invoke>\n</tool_calls>\n",
           "Sure. <｜DSML｜tool_calls><invoke name=\"f\"><DSML｜parameter name=\"x\">1</DSML｜parameter>"
           "</｜DSML｜invoke></tool_calls>"}) {
    const ParsedAssistantOutput r = parse_dsml_output(text, 5);
    EXPECT_EQ(r.content, "Sure.") << text;
    ASSERT_EQ(r.tool_calls.size(), 1u) << text;
    EXPECT_EQ(r.tool_calls[0].arguments, R"({"x":"1"})") << text;
  }
}

TEST(DsmlParse, MalformedBlockFallsBackToText) {
  const std::string text = "Hi\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\ngarbage here";
  for (const std::string& t : {text, text + "</｜DSML｜invoke></｜DSML｜tool_calls>"}) {
    const ParsedAssistantOutput r = parse_dsml_output(t, 6);
    EXPECT_TRUE(r.tool_calls.empty());
    EXPECT_EQ(r.content, t);  // nothing lost: the whole text is content
    ASSERT_FALSE(r.warnings.empty());
    EXPECT_NE(r.warnings[0].find("malformed DSML"), std::string::npos);
    EXPECT_TRUE(r.raw_dsml.empty());
  }
  const ParsedAssistantOutput unterminated =
      parse_dsml_output("x<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">v", 7);
  EXPECT_TRUE(unterminated.tool_calls.empty());
  EXPECT_EQ(unterminated.content, "x<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">v");
  EXPECT_NE(unterminated.warnings.back().find("unterminated"), std::string::npos);
}

TEST(DsmlParse, TextWithoutBlockIsContent) {
  const ParsedAssistantOutput r = parse_dsml_output("Use <b>bold</b> and a < b; done.\n\n", 8);
  EXPECT_EQ(r.content, "Use <b>bold</b> and a < b; done.\n\n");
  EXPECT_TRUE(r.tool_calls.empty());
}

TEST(DsmlParse, TrailingWhitespaceAfterBlockIsDroppedTextIsKept) {
  ParsedAssistantOutput r = parse_dsml_output(std::string(kOfficialCall) + "\n  \n", 9);
  EXPECT_EQ(r.content, "");
  EXPECT_EQ(r.raw_dsml, kOfficialCall);
  r = parse_dsml_output(std::string(kOfficialCall) + "\nafter", 9);
  EXPECT_EQ(r.content, "\nafter");
  EXPECT_EQ(r.tool_calls.size(), 1u);
  EXPECT_TRUE(r.raw_dsml.empty());  // not the exact whole output any more: no replay
}

TEST(DsmlParse, RenderThenParseRoundTrips) {
  const std::vector<ToolCall> calls = {
      {"x", "write", R"({"path":"/a","body":"<｜DSML｜parameter> and </｜DSML｜parameter> and &lt;","n":[1,2.5,{"k":null}],"t":false})"},
      {"y", "name \"quoted\" &amp;", R"({})"},
  };
  const ParsedAssistantOutput r = parse_dsml_output(render_dsml_tool_calls(calls), 10);
  ASSERT_EQ(r.tool_calls.size(), 2u);
  EXPECT_EQ(r.tool_calls[0].arguments, calls[0].arguments);
  EXPECT_EQ(r.tool_calls[1].name, calls[1].name);
  EXPECT_EQ(r.tool_calls[1].arguments, "{}");
}

// Feeds text in the given chunks and checks that the events reproduce the result.
ParsedAssistantOutput stream(const std::string& text, const std::vector<size_t>& cuts, uint64_t seed) {
  DsmlStreamParser p(seed);
  std::vector<DsmlEvent> events;
  size_t begin = 0;
  for (size_t cut : cuts) {
    p.feed(std::string_view(text).substr(begin, cut - begin), events);
    begin = cut;
  }
  p.feed(std::string_view(text).substr(begin), events);
  p.finish(events);
  std::string content;
  std::map<int, std::string> names, args;
  std::vector<int> order;
  for (const DsmlEvent& e : events) {
    if (e.kind == DsmlEvent::Kind::kContent || e.kind == DsmlEvent::Kind::kFallbackText) content += e.text;
    if (e.kind == DsmlEvent::Kind::kToolCallStart) names[e.index] = e.text, order.push_back(e.index);
    if (e.kind == DsmlEvent::Kind::kToolCallArguments) args[e.index] += e.text;
  }
  const ParsedAssistantOutput& r = p.result();
  EXPECT_EQ(content, r.content);
  if (r.warnings.empty()) {
    EXPECT_EQ(order.size(), r.tool_calls.size());
    for (size_t i = 0; i < r.tool_calls.size() && i < order.size(); ++i) {
      EXPECT_EQ(names[order[i]], r.tool_calls[i].name);
      EXPECT_EQ(args[order[i]], r.tool_calls[i].arguments);
    }
  }
  return r;
}

TEST(DsmlStream, AnyChunkingGivesTheSameResult) {
  const std::vector<std::string> texts = {
      std::string("Checking the weather now.") + kOfficialCall,
      "A\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"w\">\n<｜DSML｜parameter name=\"s\" string=\"true\">x "
      "&lt;/｜DSML｜parameter> </parameter> &lt; y</｜DSML｜parameter>\n<｜DSML｜parameter name=\"j\" "
      "string=\"false\">{\"a\": [1, 2]}</｜DSML｜parameter>\n<｜DSML｜parameter name=\"o\">\n<｜DSML｜parameter "
      "name=\"k\" string=\"true\">v</｜DSML｜parameter>\n</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",
      "no tools here, just < and <tool and <｜DSML｜ text\n\n",
      "broken <｜DSML｜tool_calls>\n<｜DSML｜invoke>\n</｜DSML｜invoke></｜DSML｜tool_calls> tail",
  };
  std::mt19937 rng(3);
  for (const std::string& text : texts) {
    const ParsedAssistantOutput whole = parse_dsml_output(text, 42);
    // Every single split point, then random multi-way splits.
    for (size_t cut = 0; cut <= text.size(); ++cut) {
      const ParsedAssistantOutput r = stream(text, {cut}, 42);
      ASSERT_EQ(r.content, whole.content) << "cut " << cut;
      ASSERT_EQ(r.tool_calls.size(), whole.tool_calls.size()) << "cut " << cut;
      for (size_t i = 0; i < r.tool_calls.size(); ++i) {
        ASSERT_EQ(r.tool_calls[i].arguments, whole.tool_calls[i].arguments) << "cut " << cut;
        ASSERT_EQ(r.tool_calls[i].id, whole.tool_calls[i].id);
      }
      ASSERT_EQ(r.raw_dsml, whole.raw_dsml);
    }
    for (int iter = 0; iter < 200; ++iter) {
      std::vector<size_t> cuts;
      for (size_t pos = 0; pos < text.size(); pos += 1 + rng() % 7) cuts.push_back(pos);
      const ParsedAssistantOutput r = stream(text, cuts, 42);
      ASSERT_EQ(r.content, whole.content);
      ASSERT_EQ(r.tool_calls.size(), whole.tool_calls.size());
    }
  }
}

TEST(DsmlStream, NameIsEmittedBeforeTheArgumentsArrive) {
  DsmlStreamParser p(1);
  std::vector<DsmlEvent> events;
  p.feed("Hi\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_weather\">\n<｜DSML｜parameter name=\"location\" "
         "string=\"true\">Bei", events);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0].kind, DsmlEvent::Kind::kContent);
  EXPECT_EQ(events[0].text, "Hi");
  EXPECT_EQ(events[1].kind, DsmlEvent::Kind::kToolCallStart);
  EXPECT_EQ(events[1].text, "get_weather");
  EXPECT_EQ(events[1].index, 0);
  std::string args;
  for (const DsmlEvent& e : events)
    if (e.kind == DsmlEvent::Kind::kToolCallArguments) args += e.text;
  EXPECT_EQ(args, R"({"location":"Bei)");
}

TEST(DsmlStream, HoldsBackOnlyWhatCouldStartABlock) {
  DsmlStreamParser p(1);
  std::vector<DsmlEvent> events;
  p.feed("Hello world <", events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].text, "Hello world");  // " <" may begin "\n\n<｜DSML｜tool_calls>"-like text
  events.clear();
  p.feed("b>", events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].text, " <b>");
}

}  // namespace
}  // namespace ds4
