// Anthropic Messages and OpenAI Responses request parsing (http/anthropic_request.h,
// http/responses_request.h): every supported field lands in the ChatRequest the chat pipeline
// renders, assistant turns keep their reasoning / content / tool calls (ids kept, so replay can
// find them), and each refused feature is a 400 naming the parameter. Also base64 round trips.
#include <gtest/gtest.h>

#include "http/anthropic_request.h"
#include "http/base64.h"
#include "http/responses_request.h"

namespace ds4::http {
namespace {

AnthropicRequest anthropic_ok(const std::string& body, bool count_tokens = false) {
  AnthropicRequest r;
  const auto e = parse_anthropic_request(body, count_tokens, r);
  EXPECT_FALSE(e) << (e ? e->message : "");
  return r;
}

ApiError anthropic_error(const std::string& body) {
  AnthropicRequest r;
  const auto e = parse_anthropic_request(body, false, r);
  EXPECT_TRUE(e) << body;
  return e.value_or(ApiError{});
}

ResponsesRequest responses_ok(const std::string& body) {
  ResponsesRequest r;
  const auto e = parse_responses_request(body, r);
  EXPECT_FALSE(e) << (e ? e->message : "");
  return r;
}

ApiError responses_error(const std::string& body) {
  ResponsesRequest r;
  const auto e = parse_responses_request(body, r);
  EXPECT_TRUE(e) << body;
  return e.value_or(ApiError{});
}

TEST(AnthropicRequest, ToolConversationBecomesChatMessages) {
  const AnthropicRequest r = anthropic_ok(R"({"model":"m","max_tokens":9,"system":[{"type":"text","text":"sys"}],
    "temperature":0.5,"top_p":0.9,"top_k":7,"stop_sequences":["END"],"stream":true,"metadata":{"user_id":"u"},
    "thinking":{"type":"enabled","budget_tokens":2048},
    "tools":[{"name":"get","description":"d","input_schema":{"type":"object","properties":{"q":{"type":"string"}}}}],
    "tool_choice":{"type":"any"},
    "messages":[{"role":"user","content":"hi"},
      {"role":"assistant","content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"text","text":"ok"},
        {"type":"tool_use","id":"call_1","name":"get","input":{"q":"x"}}]},
      {"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":[{"type":"text","text":"42"}]},
        {"type":"text","text":"more"}]}],"mystery":1})");
  const ChatRequest& c = r.chat;
  EXPECT_EQ(c.gen.model, "m");
  EXPECT_EQ(c.gen.max_tokens, 9);
  EXPECT_FLOAT_EQ(c.gen.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(c.gen.sampling.top_p, 0.9f);
  EXPECT_EQ(c.gen.sampling.top_k, 7);
  EXPECT_EQ(c.gen.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(c.gen.stream);
  EXPECT_EQ(c.effort, ReasoningEffort::kHigh);
  EXPECT_EQ(r.thinking_budget, 2048);
  EXPECT_EQ(c.tool_choice.kind, ToolChoiceKind::kRequired);
  ASSERT_EQ(c.tools.size(), 1u);
  EXPECT_EQ(c.tools[0], R"({"type":"function","function":{"name":"get","description":"d","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}})");
  EXPECT_EQ(c.tool_takes_arguments, std::vector<bool>{true});
  ASSERT_EQ(c.messages.size(), 5u);
  EXPECT_EQ(c.messages[0].role, "system");
  EXPECT_EQ(c.messages[0].content, "sys");
  EXPECT_EQ(c.messages[2].role, "assistant");
  EXPECT_EQ(c.messages[2].reasoning_content, "hmm");
  EXPECT_EQ(c.messages[2].content, "ok");
  ASSERT_EQ(c.messages[2].tool_calls.size(), 1u);
  EXPECT_EQ(c.messages[2].tool_calls[0].id, "call_1");
  EXPECT_EQ(c.messages[2].tool_calls[0].arguments, R"({"q":"x"})");
  EXPECT_EQ(c.messages[3].role, "tool");
  EXPECT_EQ(c.messages[3].tool_call_id, "call_1");
  EXPECT_EQ(c.messages[3].content, "42");
  EXPECT_EQ(c.messages[4].content, "more");
  EXPECT_EQ(c.gen.ignored_fields, std::vector<std::string>{"mystery"});
}

TEST(AnthropicRequest, ThinkingIsOffUnlessEnabled) {
  EXPECT_EQ(anthropic_ok(R"({"max_tokens":1,"messages":[{"role":"user","content":"x"}]})").chat.effort, ReasoningEffort::kNone);
  EXPECT_EQ(anthropic_ok(R"({"max_tokens":1,"thinking":{"type":"disabled"},"messages":[{"role":"user","content":"x"}]})").chat.effort,
            ReasoningEffort::kNone);
  EXPECT_EQ(anthropic_ok(R"({"max_tokens":1,"thinking":{"type":"adaptive"},"messages":[{"role":"user","content":"x"}]})").chat.effort,
            ReasoningEffort::kHigh);
}

TEST(AnthropicRequest, CountTokensNeedsNoMaxTokens) {
  EXPECT_FALSE(anthropic_ok(R"({"messages":[{"role":"user","content":"x"}]})", true).chat.gen.max_tokens);
}

TEST(AnthropicRequest, RefusalsNameTheParameter) {
  EXPECT_EQ(anthropic_error(R"({"messages":[{"role":"user","content":"x"}]})").param, "max_tokens");
  EXPECT_EQ(anthropic_error(R"({"max_tokens":1})").param, "messages");
  EXPECT_EQ(anthropic_error(R"({"max_tokens":1,"messages":[{"role":"system","content":"x"}]})").param, "messages[0].role");
  EXPECT_EQ(anthropic_error(R"({"max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]})").param,
            "messages[0].content[0].type");
  // System text blocks: joined by newlines; a non-text block, a non-list and a block without text refused.
  EXPECT_EQ(anthropic_ok(R"({"max_tokens":1,"system":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"messages":[{"role":"user","content":"x"}]})")
                .chat.messages.front().content,
            "a\nb");
  EXPECT_EQ(anthropic_error(R"({"max_tokens":1,"system":[{"type":"image","source":{}}],"messages":[{"role":"user","content":"x"}]})").param,
            "system[0].type");
  EXPECT_EQ(anthropic_error(R"({"max_tokens":1,"system":5,"messages":[{"role":"user","content":"x"}]})").param, "system");
  EXPECT_EQ(anthropic_error(R"({"max_tokens":1,"system":[{"type":"text"}],"messages":[{"role":"user","content":"x"}]})").param,
            "system[0].text");
  EXPECT_EQ(anthropic_error(R"({"max_tokens":1,"temperature":1.5,"messages":[{"role":"user","content":"x"}]})").param, "temperature");
  EXPECT_EQ(anthropic_error(R"({"max_tokens":1,"tools":[{"type":"web_search_20250305","name":"w"}],"messages":[{"role":"user","content":"x"}]})").param,
            "tools[0].type");
  EXPECT_EQ(anthropic_error(R"({"max_tokens":1,"tool_choice":{"type":"tool","name":"nope"},"tools":[{"name":"a","input_schema":{}}],"messages":[{"role":"user","content":"x"}]})").param,
            "tool_choice");
  EXPECT_EQ(anthropic_error(R"({"max_tokens":1,"tool_choice":{"type":"any"},"messages":[{"role":"user","content":"x"}]})").param, "tool_choice");
  EXPECT_EQ(anthropic_error(R"({"max_tokens":1,"thinking":{"type":"enabled"},"messages":[{"role":"user","content":"x"}]})").param,
            "thinking.budget_tokens");
  EXPECT_EQ(anthropic_error(R"({"max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"b","input":"s"}]}]})").param,
            "messages[0].content[0].input");
}

TEST(ResponsesRequest, ItemsMergeIntoAssistantTurns) {
  const std::string encrypted = base64_encode("deep thought");
  const ResponsesRequest r = responses_ok(R"({"model":"m","instructions":"be brief","max_output_tokens":5,
    "temperature":0.2,"top_p":0.5,"reasoning":{"effort":"none"},"store":false,"include":["reasoning.encrypted_content"],
    "tools":[{"type":"function","name":"get","parameters":{"type":"object","properties":{}}}],"tool_choice":"required",
    "metadata":{"k":"v"},"input":[{"role":"user","content":"hi"},
      {"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":")" + encrypted + R"("},
      {"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok"}]},
      {"type":"function_call","call_id":"call_1","name":"get","arguments":"{}"},
      {"type":"function_call","call_id":"call_2","name":"get","arguments":"{}"},
      {"type":"function_call_output","call_id":"call_1","output":"a"},
      {"type":"function_call_output","call_id":"call_2","output":[{"type":"input_text","text":"b"}]},
      {"type":"reasoning","id":"rs_2","summary":[],"content":[{"type":"reasoning_text","text":"again"}]},
      {"type":"message","role":"assistant","content":[{"type":"output_text","text":"done"}]},
      {"role":"user","content":[{"type":"input_text","text":"x"},{"type":"input_text","text":"y"}]}]})");
  const ChatRequest& c = r.chat;
  EXPECT_EQ(c.gen.max_tokens, 5);
  EXPECT_EQ(c.effort, ReasoningEffort::kNone);
  EXPECT_EQ(r.echo.effort, "none");
  EXPECT_TRUE(r.echo.encrypted_reasoning);
  EXPECT_EQ(r.echo.metadata_json, R"({"k":"v"})");
  EXPECT_EQ(c.tool_choice.kind, ToolChoiceKind::kRequired);
  EXPECT_EQ(c.tool_takes_arguments, std::vector<bool>{false});
  ASSERT_EQ(c.messages.size(), 7u);
  EXPECT_EQ(c.messages[0].role, "system");
  EXPECT_EQ(c.messages[0].content, "be brief");
  EXPECT_EQ(c.messages[2].role, "assistant");
  EXPECT_EQ(c.messages[2].reasoning_content, "deep thought");
  EXPECT_EQ(c.messages[2].content, "ok");
  ASSERT_EQ(c.messages[2].tool_calls.size(), 2u);
  EXPECT_EQ(c.messages[2].tool_calls[1].id, "call_2");
  EXPECT_EQ(c.messages[3].role, "tool");
  EXPECT_EQ(c.messages[4].content, "b");
  EXPECT_EQ(c.messages[5].reasoning_content, "again");
  EXPECT_EQ(c.messages[5].content, "done");
  EXPECT_EQ(c.messages[6].content, "x\ny");
}

TEST(ResponsesRequest, StringInputIsOneUserMessage) {
  const ResponsesRequest r = responses_ok(R"({"input":"hello"})");
  ASSERT_EQ(r.chat.messages.size(), 1u);
  EXPECT_EQ(r.chat.messages[0].role, "user");
  EXPECT_FALSE(r.chat.effort);  // the server default
}

TEST(ResponsesRequest, StatefulAndUnsupportedFeaturesAreRefused) {
  const ApiError prev = responses_error(R"({"input":"x","previous_response_id":"resp_1"})");
  EXPECT_EQ(prev.status, 400);
  EXPECT_EQ(prev.param, "previous_response_id");
  EXPECT_NE(prev.message.find("stateless"), std::string::npos);
  EXPECT_EQ(responses_error(R"({"input":"x","background":true})").param, "background");
  EXPECT_EQ(responses_error(R"({"input":[{"type":"item_reference","id":"i"}]})").param, "input[0].type");
  EXPECT_EQ(responses_error(R"({"input":"x","tools":[{"type":"web_search"}]})").param, "tools[0].type");
  EXPECT_EQ(responses_error(R"({"input":"x","text":{"format":{"type":"json_schema"}}})").param, "text.format");
  EXPECT_EQ(responses_error(R"({"input":[{"role":"user","content":[{"type":"input_image","image_url":"u"}]}]})").param,
            "input[0].content[0].type");
  EXPECT_EQ(responses_error(R"({"input":[{"type":"reasoning","encrypted_content":"%%%"}]})").param, "input[0].encrypted_content");
  EXPECT_EQ(responses_error(R"({"model":"m"})").param, "input");
  EXPECT_EQ(responses_error(R"({"input":"x","tool_choice":"required"})").param, "tool_choice");
}

TEST(Base64, RoundTripsAndRejectsGarbage) {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)})
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  EXPECT_EQ(base64_encode("abcd"), "YWJjZA==");
  EXPECT_FALSE(base64_decode("YWJjZA="));
  EXPECT_FALSE(base64_decode("YW=jZA=="));
  EXPECT_FALSE(base64_decode("YWJj ZA="));
}

}  // namespace
}  // namespace ds4::http
