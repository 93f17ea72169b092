// Unit tests of the SSE framing (every split point of a stream gives the same events; comments,
// CRLF/CR endings, multi-line data) and of the OpenAI chunk reader (role-only first chunk is not a
// token; content, reasoning, tool calls and completions text are; usage, errors, [DONE]).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "loadtest/sse.h"

namespace lt = ds4::loadtest;

namespace {

std::vector<std::string> events_of(const std::vector<std::string>& pieces) {
  lt::SseParser p;
  std::vector<std::string> out;
  auto sink = [&](std::string_view d) { out.emplace_back(d); };
  for (const std::string& s : pieces) p.feed(s, sink);
  p.finish(sink);
  return out;
}

}  // namespace

TEST(LoadtestSse, EveryTwoWaySplitGivesTheSameEvents) {
  const std::string stream =
      ": ping\r\n\r\ndata: {\"a\":1}\r\n\r\nevent: x\nid: 7\ndata: line1\ndata: line2\n\n"
      ":keep-alive\n\ndata:{\"b\":2}\r\rdata: [DONE]\n\n";
  const std::vector<std::string> want = {"{\"a\":1}", "line1\nline2", "{\"b\":2}", "[DONE]"};
  EXPECT_EQ(events_of({stream}), want);
  for (size_t cut = 0; cut <= stream.size(); ++cut)
    EXPECT_EQ(events_of({stream.substr(0, cut), stream.substr(cut)}), want) << "cut at " << cut;
  std::vector<std::string> bytes;
  for (char c : stream) bytes.emplace_back(1, c);
  EXPECT_EQ(events_of(bytes), want);
}

TEST(LoadtestSse, UnterminatedLastEventIsDeliveredAtFinish) {
  EXPECT_EQ(events_of({"data: x\n\ndata: tail"}), (std::vector<std::string>{"x", "tail"}));
  EXPECT_EQ(events_of({": only a comment\n\n"}), std::vector<std::string>{});
  EXPECT_EQ(events_of({"data\n\n"}), std::vector<std::string>{""});  // "data" with no colon
}

namespace {

lt::StreamEvent parse(const std::string& data, std::string* err = nullptr) {
  simdjson::dom::parser parser;
  lt::StreamEvent ev;
  std::string e = lt::parse_stream_event(parser, data, &ev);
  if (err) *err = e;
  else EXPECT_EQ(e, "") << data;
  return ev;
}

}  // namespace

TEST(LoadtestChunk, RoleOnlyFirstChunkIsNotAToken) {
  lt::StreamEvent ev = parse(R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]})");
  EXPECT_TRUE(ev.has_choices);
  EXPECT_FALSE(ev.has_token);
  ev = parse(R"({"choices":[{"index":0,"delta":{"role":"assistant"}}]})");
  EXPECT_FALSE(ev.has_token);
  ev = parse(R"({"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]})");
  EXPECT_TRUE(ev.has_token);  // our server's first chunk: role together with the first token
}

TEST(LoadtestChunk, TokenFields) {
  EXPECT_TRUE(parse(R"({"choices":[{"delta":{"content":" a"}}]})").has_token);
  EXPECT_TRUE(parse(R"({"choices":[{"delta":{"reasoning_content":"hm"}}]})").has_token);
  EXPECT_TRUE(parse(R"({"choices":[{"delta":{"reasoning":"hm","content":null}}]})").has_token);
  EXPECT_TRUE(parse(R"({"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]}}]})").has_token);
  EXPECT_FALSE(parse(R"({"choices":[{"delta":{"tool_calls":[]}}]})").has_token);
  EXPECT_TRUE(parse(R"({"choices":[{"index":0,"text":"x","finish_reason":null}]})").has_token);
  EXPECT_FALSE(parse(R"({"choices":[{"index":0,"text":""}]})").has_token);
  lt::StreamEvent last = parse(R"({"choices":[{"delta":{"content":"."},"finish_reason":"length"}]})");
  EXPECT_EQ(last.finish_reason, "length");
}

TEST(LoadtestChunk, UsageDoneAndErrors) {
  lt::StreamEvent u = parse(R"({"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}})");
  EXPECT_FALSE(u.has_choices);
  EXPECT_EQ(u.prompt_tokens, 12);
  EXPECT_EQ(u.completion_tokens, 34);
  EXPECT_TRUE(parse("[DONE]").done);
  EXPECT_TRUE(parse("[DONE]  ").done);
  lt::StreamEvent e = parse(R"({"error":{"message":"boom","type":"server_error"}})");
  EXPECT_TRUE(e.is_error);
  EXPECT_EQ(e.error_message, "boom");
  EXPECT_TRUE(parse(R"({"error":"Unauthorized"})").is_error);
  EXPECT_FALSE(parse(R"({"error":null,"choices":[{"delta":{"content":"a"}}]})").is_error);
  std::string err;
  parse("{not json", &err);
  EXPECT_NE(err.find("not JSON"), std::string::npos);
  parse("[1,2]", &err);
  EXPECT_NE(err.find("not a JSON object"), std::string::npos);
}
