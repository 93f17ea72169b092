// The agent API writers with the real tokenizer (http/anthropic_response.h, responses_response.h):
// a generated turn with reasoning, text and a DSML tool call streams as Anthropic's documented
// event grammar (message_start, per block start / deltas / stop, message_delta, message_stop) and as
// the Responses grammar (created, in_progress, per item added / part / deltas / done, completed;
// sequence numbers 0, 1, 2, ...); deltas concatenate to the non-stream body's blocks; usage splits
// cached prompt tokens; stop reasons map (tool_use / max_tokens / stop_sequence); errors keep each
// API's shape.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <memory>

#include "engine/dsml.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_tables.h"
#include "http/anthropic_response.h"
#include "http/responses_response.h"

namespace ds4::http {
namespace {

const Tokenizer& tok() {
  static const Tokenizer t(load_tokenizer_tables(std::string(DS4_BINARY_DIR) + "/data/tokenizer"));
  return t;
}

const std::string kReasoning = "I should look it up.";
const std::string kText = "Checking.";

std::vector<int32_t> turn_tokens() {
  const std::string dsml = render_dsml_tool_calls({ToolCall{"", "get", R"({"q":"x"})"}});
  return tok().encode(kReasoning + "</think>" + kText + dsml + "<｜end▁of▁sentence｜>", true);
}

struct Event {
  std::string name;
  std::string data;
};

// "event: X\ndata: {...}\n\n" frames; the name must equal data.type.
std::vector<Event> frames(const std::string& sse) {
  std::vector<Event> out;
  size_t pos = 0;
  while (pos < sse.size()) {
    const size_t end = sse.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos);
    if (end == std::string::npos) break;
    const std::string frame = sse.substr(pos, end - pos);
    pos = end + 2;
    const size_t nl = frame.find('\n');
    EXPECT_EQ(frame.rfind("event: ", 0), 0u) << frame;
    EXPECT_EQ(frame.substr(nl + 1, 6), "data: ") << frame;
    out.push_back({frame.substr(7, nl - 7), frame.substr(nl + 7)});
  }
  return out;
}

struct Doc {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  explicit Doc(const std::string& json) { EXPECT_FALSE(parser.parse(json).get(root)) << json; }
  std::string str(const char* pointer) {
    std::string_view s;
    EXPECT_FALSE(root.at_pointer(pointer).get(s)) << pointer;
    return std::string(s);
  }
  int64_t num(const char* pointer) {
    int64_t n = -1;
    EXPECT_FALSE(root.at_pointer(pointer).get(n)) << pointer;
    return n;
  }
};

ResponseSetup setup(bool stream, const char* id) {
  ResponseSetup s;
  s.id = id;
  s.model = "ds4-tiny";
  s.stream = stream;
  s.prompt_tokens = 100;
  return s;
}

AssistantStreamOptions options(std::vector<std::string> stop = {}) {
  AssistantStreamOptions o;
  o.thinking = true;
  o.parse_tool_calls = true;
  o.stop = std::move(stop);
  return o;
}

RequestUsage usage() {
  RequestUsage u;
  u.prompt_tokens = 100;
  u.cached_prompt_tokens = 64;
  return u;
}

// Feeds the turn one token at a time; returns everything written.
std::string run(ResponseWriter& w, const std::vector<int32_t>& ids, FinishReason reason = FinishReason::kStop) {
  std::string out = w.stream_start();
  for (int32_t id : ids) w.add_tokens(std::span<const int32_t>(&id, 1), {}, usage(), out);
  out += w.finish(reason, usage());
  return out;
}

TEST(AnthropicWriter, StreamFollowsTheDocumentedGrammar) {
  auto w = make_anthropic_writer(tok(), setup(true, "msg_1"), options());
  const std::vector<Event> ev = frames(run(*w, turn_tokens()));
  ASSERT_GE(ev.size(), 4u);
  EXPECT_EQ(ev.front().name, "message_start");
  EXPECT_EQ(ev[ev.size() - 2].name, "message_delta");
  EXPECT_EQ(ev.back().name, "message_stop");
  std::vector<std::string> block_types;
  std::string thinking, text, json, signature;
  int open = -1;
  for (size_t i = 1; i + 2 < ev.size(); ++i) {
    Doc d(ev[i].data);
    EXPECT_EQ(d.str("/type"), ev[i].name);
    if (ev[i].name == "content_block_start") {
      EXPECT_EQ(open, -1) << "a block opened inside another";
      open = static_cast<int>(d.num("/index"));
      EXPECT_EQ(open, static_cast<int>(block_types.size()));
      block_types.push_back(d.str("/content_block/type"));
    } else if (ev[i].name == "content_block_delta") {
      EXPECT_EQ(d.num("/index"), open);
      const std::string type = d.str("/delta/type");
      if (type == "thinking_delta") thinking += d.str("/delta/thinking");
      else if (type == "text_delta") text += d.str("/delta/text");
      else if (type == "input_json_delta") json += d.str("/delta/partial_json");
      else if (type == "signature_delta") signature = d.str("/delta/signature");
      else ADD_FAILURE() << type;
    } else {
      EXPECT_EQ(ev[i].name, "content_block_stop");
      EXPECT_EQ(d.num("/index"), open);
      open = -1;
    }
  }
  EXPECT_EQ(block_types, (std::vector<std::string>{"thinking", "text", "tool_use"}));
  EXPECT_EQ(thinking, kReasoning);
  EXPECT_EQ(text, kText);
  EXPECT_EQ(json, R"({"q":"x"})");
  EXPECT_FALSE(signature.empty());
  Doc start(ev.front().data);
  EXPECT_EQ(start.num("/message/usage/input_tokens"), 36);
  EXPECT_EQ(start.num("/message/usage/cache_read_input_tokens"), 64);
  Doc delta(ev[ev.size() - 2].data);
  EXPECT_EQ(delta.str("/delta/stop_reason"), "tool_use");
  EXPECT_EQ(delta.num("/usage/output_tokens"), static_cast<int64_t>(turn_tokens().size()));
  EXPECT_EQ(w->finish_reason(), "tool_calls");
}

TEST(AnthropicWriter, BodyHoldsTheSameBlocks) {
  auto w = make_anthropic_writer(tok(), setup(false, "msg_2"), options());
  Doc d(run(*w, turn_tokens()));
  EXPECT_EQ(d.str("/type"), "message");
  EXPECT_EQ(d.str("/content/0/thinking"), kReasoning);
  EXPECT_EQ(d.str("/content/1/text"), kText);
  EXPECT_EQ(d.str("/content/2/type"), "tool_use");
  EXPECT_EQ(d.str("/content/2/input/q"), "x");
  EXPECT_EQ(d.str("/content/2/id").rfind("call_", 0), 0u);
  EXPECT_EQ(d.str("/stop_reason"), "tool_use");
  EXPECT_EQ(d.num("/usage/cache_read_input_tokens"), 64);
}

TEST(AnthropicWriter, StopReasons) {
  auto length = make_anthropic_writer(tok(), setup(false, "msg_3"), options());
  Doc l(run(*length, tok().encode("thinking on", false), FinishReason::kLength));
  EXPECT_EQ(l.str("/stop_reason"), "max_tokens");
  auto stopped = make_anthropic_writer(tok(), setup(false, "msg_4"), options({"STOP"}));
  std::string out;
  for (int32_t id : tok().encode("a</think>one STOP two", true)) {
    stopped->add_tokens(std::span<const int32_t>(&id, 1), {}, usage(), out);
    if (stopped->stopped()) break;
  }
  Doc s(stopped->finish(FinishReason::kStop, usage()));
  EXPECT_EQ(s.str("/stop_reason"), "stop_sequence");
  EXPECT_EQ(s.str("/stop_sequence"), "STOP");
  EXPECT_EQ(s.str("/content/1/text"), "one ");
}

TEST(AnthropicWriter, ErrorShape) {
  ApiError e = invalid_param("max_tokens", "'max_tokens' is required");
  Doc d(anthropic_error_body(e));
  EXPECT_EQ(d.str("/type"), "error");
  EXPECT_EQ(d.str("/error/type"), "invalid_request_error");
  EXPECT_EQ(d.str("/error/message"), "'max_tokens' is required");
  EXPECT_STREQ(anthropic_error_type(401), "authentication_error");
  EXPECT_STREQ(anthropic_error_type(404), "not_found_error");
  EXPECT_STREQ(anthropic_error_type(503), "overloaded_error");
  EXPECT_STREQ(anthropic_error_type(500), "api_error");
}

TEST(ResponsesWriter, StreamFollowsTheDocumentedGrammar) {
  auto w = make_responses_writer(tok(), setup(true, "resp_1"), options(), ResponsesEcho{});
  const std::vector<Event> ev = frames(run(*w, turn_tokens()));
  ASSERT_GE(ev.size(), 3u);
  EXPECT_EQ(ev[0].name, "response.created");
  EXPECT_EQ(ev[1].name, "response.in_progress");
  EXPECT_EQ(ev.back().name, "response.completed");
  std::vector<std::string> items, names;
  std::string reasoning, text, args;
  for (size_t i = 0; i < ev.size(); ++i) {
    Doc d(ev[i].data);
    EXPECT_EQ(d.str("/type"), ev[i].name);
    EXPECT_EQ(d.num("/sequence_number"), static_cast<int64_t>(i));
    names.push_back(ev[i].name);
    if (ev[i].name == "response.output_item.added") {
      EXPECT_EQ(d.num("/output_index"), static_cast<int64_t>(items.size()));
      items.push_back(d.str("/item/type"));
    }
    if (ev[i].name == "response.reasoning_text.delta") reasoning += d.str("/delta");
    if (ev[i].name == "response.output_text.delta") text += d.str("/delta");
    if (ev[i].name == "response.function_call_arguments.delta") args += d.str("/delta");
  }
  EXPECT_EQ(items, (std::vector<std::string>{"reasoning", "message", "function_call"}));
  EXPECT_EQ(reasoning, kReasoning);
  EXPECT_EQ(text, kText);
  EXPECT_EQ(args, R"({"q":"x"})");
  // Each item: added, its part / deltas / done events, then output_item.done, before the next.
  const auto at = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
  EXPECT_LT(at("response.content_part.added"), at("response.reasoning_text.delta"));
  EXPECT_LT(at("response.reasoning_text.done"), at("response.content_part.done"));
  EXPECT_LT(at("response.output_text.done"), at("response.function_call_arguments.delta"));
  EXPECT_LT(at("response.function_call_arguments.done"), static_cast<ptrdiff_t>(names.size()) - 2);
  Doc done(ev.back().data);
  EXPECT_EQ(done.str("/response/status"), "completed");
  EXPECT_EQ(done.num("/response/usage/input_tokens_details/cached_tokens"), 64);
  EXPECT_EQ(done.str("/response/output/2/call_id").rfind("call_", 0), 0u);
  EXPECT_GT(done.num("/response/usage/output_tokens_details/reasoning_tokens"), 0);
}

TEST(ResponsesWriter, BodyAndIncompleteStatus) {
  ResponsesEcho echo;
  echo.encrypted_reasoning = true;
  echo.instructions = "be brief";
  auto w = make_responses_writer(tok(), setup(false, "resp_2"), options(), echo);
  Doc d(run(*w, turn_tokens()));
  EXPECT_EQ(d.str("/object"), "response");
  EXPECT_EQ(d.str("/status"), "completed");
  EXPECT_EQ(d.str("/instructions"), "be brief");
  EXPECT_EQ(d.str("/output/0/content/0/text"), kReasoning);
  EXPECT_FALSE(d.str("/output/0/encrypted_content").empty());
  EXPECT_EQ(d.str("/output/1/content/0/text"), kText);
  EXPECT_EQ(d.str("/output/2/arguments"), R"({"q":"x"})");
  auto cut = make_responses_writer(tok(), setup(false, "resp_3"), options(), ResponsesEcho{});
  Doc c(run(*cut, tok().encode("still thinking", false), FinishReason::kLength));
  EXPECT_EQ(c.str("/status"), "incomplete");
  EXPECT_EQ(c.str("/incomplete_details/reason"), "max_output_tokens");
}

}  // namespace
}  // namespace ds4::http
