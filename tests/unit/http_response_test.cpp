// ResponseBuilder and request preparation with the real tokenizer: SSE framing (role with the
// first text, one chunk per token, final chunk, usage chunk, [DONE]), every chunk valid JSON,
// tool calls parsed from generated DSML tokens into OpenAI tool_calls (streamed deltas and the
// final message), stop strings, completions keeping <think> tags, and prepare_chat /
// prepare_completion limits (context_length_exceeded, default max_tokens, forced tool calls).
#include <gtest/gtest.h>
#include <simdjson.h>

#include <memory>

#include "engine/dsml.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_tables.h"
#include "http/generation_prepare.h"
#include "http/response_builder.h"

namespace ds4::http {
namespace {

const Tokenizer& tok() {
  static const Tokenizer t(load_tokenizer_tables(std::string(DS4_BINARY_DIR) + "/data/tokenizer"));
  return t;
}

std::vector<int32_t> ids(const std::string& text) { return tok().encode(text, /*parse_special=*/true); }

// Parsed events; a simdjson parser holds one document, so each event has its own.
struct Parsed {
  std::vector<std::string> storage;
  std::vector<std::unique_ptr<simdjson::dom::parser>> parsers;
};

// The JSON payloads of the data: events (without [DONE]); checks the framing on the way.
std::vector<simdjson::dom::element> events(const std::string& sse, Parsed& parsed) {
  std::vector<std::string>& storage = parsed.storage;
  std::vector<simdjson::dom::element> out;
  size_t pos = 0;
  storage.clear();
  while (pos < sse.size()) {
    const size_t end = sse.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated event";
    const std::string ev = sse.substr(pos, end - pos);
    pos = end + 2;
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    if (ev == "data: [DONE]") continue;
    storage.push_back(ev.substr(6));
  }
  for (const std::string& s : storage) {
    simdjson::dom::element e;
    parsed.parsers.push_back(std::make_unique<simdjson::dom::parser>());
    EXPECT_FALSE(parsed.parsers.back()->parse(s).get(e)) << "invalid JSON: " << s;
    out.push_back(e);
  }
  return out;
}

ResponseSetup stream_setup(bool chat) {
  ResponseSetup s;
  s.chat = chat;
  s.id = "id-1";
  s.model = "demo";
  s.stream = true;
  s.include_usage = true;
  s.return_token_ids = true;
  s.prompt_tokens = 5;
  return s;
}

TEST(HttpResponse, ChatStreamFraming) {
  ResponseBuilder b(tok(), stream_setup(true), AssistantStreamOptions{});
  const std::vector<int32_t> t = ids("Hello there, world");
  std::string sse;
  b.add_tokens(t, {}, sse);
  sse += b.finish(FinishReason::kLength, RequestUsage{5, static_cast<int64_t>(t.size()), 0, 0});
  ASSERT_TRUE(sse.ends_with("data: [DONE]\n\n"));
  Parsed parsed;
  auto ev = events(sse, parsed);
  ASSERT_EQ(ev.size(), t.size() + 2);  // one per token, the final chunk, the usage chunk
  EXPECT_EQ(std::string_view(ev[0]["choices"].at(0)["delta"]["role"]), "assistant");
  std::string text;
  int64_t reported = 0;
  for (size_t i = 0; i + 1 < ev.size(); ++i) {
    auto choice = ev[i]["choices"].at(0);
    std::string_view piece;
    if (!choice["delta"]["content"].get(piece)) text += piece;
    reported += static_cast<int64_t>(simdjson::dom::array(choice["token_ids"]).size());
  }
  EXPECT_EQ(text, "Hello there, world");
  EXPECT_EQ(reported, static_cast<int64_t>(t.size()));
  EXPECT_EQ(std::string_view(ev[t.size()]["choices"].at(0)["finish_reason"]), "length");
  EXPECT_EQ(simdjson::dom::array(ev.back()["choices"]).size(), 0u);
  EXPECT_EQ(int64_t(ev.back()["usage"]["completion_tokens"]), static_cast<int64_t>(t.size()));
  EXPECT_EQ(int64_t(ev.back()["usage"]["total_tokens"]), 5 + static_cast<int64_t>(t.size()));
}

TEST(HttpResponse, ToolCallsFromGeneratedDsml) {
  const std::string block = render_dsml_tool_calls({ToolCall{"", "get_weather", R"({"city":"Paris","days":3})"}});
  const std::vector<int32_t> t = ids("Checking." + block);
  AssistantStreamOptions o;
  o.parse_tool_calls = true;
  o.tool_id_seed = 42;
  ResponseBuilder streamed(tok(), stream_setup(true), o);
  std::string sse;
  streamed.add_tokens(t, {}, sse);
  sse += streamed.finish(FinishReason::kStop, RequestUsage{});
  Parsed parsed;
  std::string name, args, id, content;
  for (auto e : events(sse, parsed)) {
    simdjson::dom::array choices = e["choices"];
    if (choices.size() == 0) continue;
    auto delta = choices.at(0)["delta"];
    std::string_view s;
    if (!delta["content"].get(s)) content += s;
    simdjson::dom::array calls;
    if (delta["tool_calls"].get(calls)) continue;
    for (auto c : calls) {
      EXPECT_EQ(int64_t(c["index"]), 0);
      if (!c["id"].get(s)) id = s;
      if (!c["function"]["name"].get(s)) name += s;
      if (!c["function"]["arguments"].get(s)) args += s;
    }
  }
  EXPECT_EQ(content, "Checking.");
  EXPECT_EQ(name, "get_weather");
  EXPECT_EQ(args, R"({"city":"Paris","days":3})");
  EXPECT_EQ(id.rfind("call_", 0), 0u);
  EXPECT_EQ(streamed.finish_reason(), "tool_calls");

  ResponseSetup whole = stream_setup(true);
  whole.stream = false;
  ResponseBuilder b(tok(), whole, o);
  std::string unused;
  b.add_tokens(t, {}, unused);
  EXPECT_TRUE(unused.empty());
  const std::string body = b.finish(FinishReason::kStop, RequestUsage{});
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_FALSE(parser.parse(body).get(doc)) << body;
  auto msg = doc["choices"].at(0)["message"];
  EXPECT_EQ(std::string_view(msg["content"]), "Checking.");
  EXPECT_EQ(std::string_view(msg["tool_calls"].at(0)["function"]["name"]), "get_weather");
  EXPECT_EQ(std::string_view(doc["choices"].at(0)["finish_reason"]), "tool_calls");
  EXPECT_EQ(b.message().raw_dsml, block);
}

TEST(HttpResponse, StopStringEndsTheText) {
  AssistantStreamOptions o;
  o.stop = {"STOP"};
  ResponseSetup s = stream_setup(true);
  s.stream = false;
  ResponseBuilder b(tok(), s, o);
  std::string sse;
  b.add_tokens(ids("one two STOP three four"), {}, sse);
  EXPECT_TRUE(b.stopped());
  const std::string body = b.finish(FinishReason::kStop, RequestUsage{});
  EXPECT_NE(body.find(R"("content":"one two ")"), std::string::npos) << body;
  EXPECT_EQ(b.finish_reason(), "stop");
  EXPECT_LT(b.completion_tokens(), static_cast<int64_t>(ids("one two STOP three four").size()));
}

TEST(HttpResponse, ReasoningIsSeparateInChatAndInlineInCompletions) {
  const std::vector<int32_t> t = ids("<think>hmm</think>answer");
  ResponseSetup chat = stream_setup(true);
  chat.stream = false;
  ResponseBuilder c(tok(), chat, AssistantStreamOptions{});
  std::string unused;
  c.add_tokens(t, {}, unused);
  c.finish(FinishReason::kStop, RequestUsage{});
  EXPECT_EQ(c.message().reasoning, "hmm");
  EXPECT_EQ(c.message().content, "answer");

  AssistantStreamOptions raw;
  raw.stop_in_reasoning = true;
  ResponseBuilder k(tok(), stream_setup(false), raw);
  std::string sse;
  k.add_tokens(t, {}, sse);
  sse += k.finish(FinishReason::kStop, RequestUsage{});
  Parsed parsed;
  std::string text;
  for (auto e : events(sse, parsed)) {
    simdjson::dom::array choices = e["choices"];
    if (choices.size()) text += std::string_view(choices.at(0)["text"]);
  }
  EXPECT_EQ(text, "<think>hmm</think>answer");
}

PrepareContext context(int64_t max_model_len = 64) {
  return PrepareContext{tok(), "demo", max_model_len, ReasoningEffort::kNone, nullptr, 99};
}

ChatRequest user_says(const std::string& text) {
  ChatRequest r;
  r.messages.push_back(ChatMessage{"user", text, {}, {}, {}, {}});
  return r;
}

TEST(HttpPrepare, ContextLimitsAndDefaults) {
  PreparedGeneration p;
  ChatRequest r = user_says("hello");
  ASSERT_FALSE(prepare_chat(context(), r, p));
  const int64_t prompt = static_cast<int64_t>(p.request.prompt_tokens.size());
  EXPECT_EQ(p.request.max_tokens, 64 - prompt);  // the rest of the context
  EXPECT_EQ(p.request.sampling.seed, 99u);       // the server's fresh seed
  EXPECT_EQ(p.setup.prompt_tokens, prompt);
  r.gen.max_tokens = 64 - prompt + 1;
  PreparedGeneration q;
  const auto e = prepare_chat(context(), r, q);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code, "context_length_exceeded");
  EXPECT_EQ(e->numbers[0], (std::pair<std::string, int64_t>{"n_prompt_tokens", prompt}));
  ChatRequest other = user_says("x");
  other.gen.model = "gpt-4";
  PreparedGeneration z;
  EXPECT_EQ(prepare_chat(context(), other, z)->status, 404);
}

TEST(HttpPrepare, ForcedToolCalls) {
  ChatRequest r = user_says("time?");
  r.tools = {R"({"type":"function","function":{"name":"get_time"}})",
             R"({"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}})"};
  r.tool_names = {"get_time", "get_weather"};
  r.tool_takes_arguments = {false, true};
  r.tool_choice = ToolChoice{ToolChoiceKind::kNamed, "get_time"};
  PreparedGeneration p;
  ASSERT_FALSE(prepare_chat(context(4096), r, p));
  EXPECT_TRUE(p.complete_without_generation);
  EXPECT_EQ(tok().decode(p.forced_tokens), render_dsml_tool_calls({ToolCall{"", "get_time", ""}}));
  r.tool_choice = ToolChoice{ToolChoiceKind::kNamed, "get_weather"};
  PreparedGeneration q;
  ASSERT_FALSE(prepare_chat(context(4096), r, q));
  EXPECT_FALSE(q.complete_without_generation);
  const std::string opening = tok().decode(q.forced_tokens);
  EXPECT_TRUE(render_dsml_tool_calls({ToolCall{"", "get_weather", R"({"city":"x"})"}}).starts_with(opening)) << opening;
  EXPECT_TRUE(opening.ends_with("\"get_weather\">\n")) << opening;
  // The prompt ends with the opening, and the parser, fed the same tokens, starts a call.
  EXPECT_TRUE(std::equal(q.forced_tokens.rbegin(), q.forced_tokens.rend(), q.request.prompt_tokens.rbegin()));
  r.tool_choice = ToolChoice{ToolChoiceKind::kNone, ""};
  PreparedGeneration n;
  ASSERT_FALSE(prepare_chat(context(4096), r, n));
  EXPECT_TRUE(n.forced_tokens.empty());
  EXPECT_FALSE(n.stream_options.parse_tool_calls);
  EXPECT_LT(n.request.prompt_tokens.size(), q.request.prompt_tokens.size());
}

TEST(HttpPrepare, CompletionPrompts) {
  CompletionRequest r;
  r.prompt_text = "Hello";
  PreparedGeneration p;
  ASSERT_FALSE(prepare_completion(context(), r, p));
  EXPECT_EQ(p.request.prompt_tokens.front(), tok().chat_ids().bos);
  EXPECT_EQ(tok().decode(std::span(p.request.prompt_tokens).subspan(1)), "Hello");
  r.prompt_is_tokens = true;
  r.prompt_tokens = {1, tok().vocab_size()};
  PreparedGeneration q;
  const auto e = prepare_completion(context(), r, q);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "prompt");
  EXPECT_NE(e->message.find("prompt[1]"), std::string::npos);
}

}  // namespace
}  // namespace ds4::http
