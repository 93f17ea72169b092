// Request parsing and validation (http/openai_request.h): every supported field lands in the
// struct, null means "not given", unknown fields are listed, and each kind of bad input is a 400
// (or 404 / 413 upstream) naming the parameter. Also auth / CORS decisions and the command line.
#include <gtest/gtest.h>

#include "engine/load_error.h"
#include "http/auth.h"
#include "http/openai_request.h"
#include "http/server_options.h"

namespace ds4::http {
namespace {

ChatRequest chat_ok(const std::string& body) {
  ChatRequest r;
  const auto e = parse_chat_request(body, r);
  EXPECT_FALSE(e) << (e ? e->message : "");
  return r;
}

ApiError chat_error(const std::string& body) {
  ChatRequest r;
  const auto e = parse_chat_request(body, r);
  EXPECT_TRUE(e) << body;
  return e.value_or(ApiError{});
}

TEST(HttpRequest, ChatFieldsAreRead) {
  const ChatRequest r = chat_ok(R"({"model":"m","messages":[{"role":"system","content":"s"},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
      "temperature":0.5,"top_p":0.9,"top_k":40,"min_p":0.1,"seed":-3,"max_tokens":7,"max_completion_tokens":9,
      "stop":"END","stream":true,"stream_options":{"include_usage":true},"logprobs":true,"top_logprobs":2,
      "stop_token_ids":[5,6],"ignore_eos":true,"return_token_ids":true,"priority":2,"reasoning_effort":"none",
      "presence_penalty":0,"n":1,"user":"u","mystery":{"x":1}})");
  EXPECT_EQ(r.gen.model, "m");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[1].content, "a\nb");
  EXPECT_FLOAT_EQ(r.gen.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.gen.sampling.top_p, 0.9f);
  EXPECT_EQ(r.gen.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.gen.sampling.min_p, 0.1f);
  EXPECT_TRUE(r.gen.seed_given);
  EXPECT_EQ(r.gen.sampling.seed, static_cast<uint64_t>(-3));
  EXPECT_EQ(r.gen.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_EQ(r.gen.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(r.gen.stream && r.gen.include_usage && r.gen.logprobs && r.gen.ignore_eos && r.gen.return_token_ids);
  EXPECT_EQ(r.gen.top_logprobs, 2);
  EXPECT_EQ(r.gen.stop_token_ids, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(r.gen.priority, 2);
  EXPECT_EQ(r.effort, ReasoningEffort::kNone);
  EXPECT_EQ(r.gen.ignored_fields, std::vector<std::string>{"mystery"});
}

TEST(HttpRequest, NullMeansNotGiven) {
  const ChatRequest r = chat_ok(R"({"messages":[{"role":"user","content":"x"}],"temperature":null,
      "max_tokens":null,"seed":null,"stop":null,"tools":null,"tool_choice":null,"stream":null})");
  EXPECT_FLOAT_EQ(r.gen.sampling.temperature, 1.0f);
  EXPECT_FALSE(r.gen.max_tokens.has_value());
  EXPECT_FALSE(r.gen.seed_given);
  EXPECT_TRUE(r.gen.stop.empty() && r.tools.empty() && !r.gen.stream);
}

TEST(HttpRequest, AssistantToolCallsAndToolResults) {
  const ChatRequest r = chat_ok(R"({"messages":[{"role":"user","content":"t?"},
      {"role":"assistant","content":null,"reasoning_content":"think","tool_calls":[{"id":"call_1","type":"function",
       "function":{"name":"get_time","arguments":"{\"tz\":\"UTC\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"12:00"}],
      "tools":[{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{"tz":{"type":"string"}}}}},
               {"type":"function","function":{"name":"ping"}}],
      "tool_choice":{"type":"function","function":{"name":"ping"}}})");
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[1].reasoning_content, "think");
  ASSERT_EQ(r.messages[1].tool_calls.size(), 1u);
  EXPECT_EQ(r.messages[1].tool_calls[0].id, "call_1");
  EXPECT_EQ(r.messages[1].tool_calls[0].arguments, R"({"tz":"UTC"})");
  EXPECT_EQ(r.messages[2].tool_call_id, "call_1");
  EXPECT_EQ(r.tool_names, (std::vector<std::string>{"get_time", "ping"}));
  EXPECT_EQ(r.tool_takes_arguments, (std::vector<bool>{true, false}));
  EXPECT_EQ(r.tool_choice.kind, ToolChoiceKind::kNamed);
  EXPECT_EQ(r.tool_choice.name, "ping");
}

TEST(HttpRequest, ReasoningSwitches) {
  const std::string m = R"("messages":[{"role":"user","content":"x"}])";
  EXPECT_EQ(chat_ok("{" + m + R"(,"thinking":{"type":"disabled"}})").effort, ReasoningEffort::kNone);
  EXPECT_EQ(chat_ok("{" + m + R"(,"chat_template_kwargs":{"thinking":true}})").effort, ReasoningEffort::kHigh);
  EXPECT_EQ(chat_ok("{" + m + R"(,"chat_template_kwargs":{"enable_thinking":false}})").effort, ReasoningEffort::kNone);
  EXPECT_EQ(chat_ok("{" + m + R"(,"reasoning":{"effort":"max"}})").effort, ReasoningEffort::kMax);
  EXPECT_FALSE(chat_ok("{" + m + R"(,"include_reasoning":false})").include_reasoning);
  EXPECT_FALSE(chat_ok("{" + m + "}").effort.has_value());
  EXPECT_EQ(chat_error("{" + m + R"(,"reasoning_effort":"extreme"})").param, "reasoning_effort");
}

TEST(HttpRequest, ErrorsNameTheParameter) {
  const std::string m = R"("messages":[{"role":"user","content":"x"}])";
  struct Case {
    std::string body, param, code;
  };
  const std::vector<Case> cases = {
      {"{" + m + R"(,"temperature":2.5})", "temperature", "invalid_value"},
      {"{" + m + R"(,"temperature":"hot"})", "temperature", "invalid_value"},
      {"{" + m + R"(,"top_p":0})", "top_p", "invalid_value"},
      {"{" + m + R"(,"top_k":-2})", "top_k", "invalid_value"},
      {"{" + m + R"(,"min_p":1.5})", "min_p", "invalid_value"},
      {"{" + m + R"(,"max_tokens":0})", "max_tokens", "invalid_value"},
      {"{" + m + R"(,"max_tokens":1.5})", "max_tokens", "invalid_value"},
      {"{" + m + R"(,"seed":18446744073709551615})", "seed", "invalid_value"},
      {"{" + m + R"(,"stop":[1]})", "stop[0]", "invalid_value"},
      {"{" + m + R"(,"stream":"yes"})", "stream", "invalid_value"},
      {"{" + m + R"(,"stream_options":{"include_usage":true}})", "stream_options", "invalid_value"},
      {"{" + m + R"(,"top_logprobs":3})", "top_logprobs", "invalid_value"},
      {"{" + m + R"(,"top_logprobs":21,"logprobs":true})", "top_logprobs", "invalid_value"},
      {"{" + m + R"(,"n":3})", "n", "unsupported_value"},
      {"{" + m + R"(,"frequency_penalty":0.5})", "frequency_penalty", "unsupported_value"},
      {"{" + m + R"(,"logit_bias":{"5":1}})", "logit_bias", "unsupported_value"},
      {"{" + m + R"(,"response_format":{"type":"json_object"}})", "response_format", "unsupported_value"},
      {"{" + m + R"(,"min_tokens":3})", "min_tokens", "unsupported_value"},
      {"{" + m + R"(,"tool_choice":"required"})", "tool_choice", "invalid_value"},
      {"{" + m + R"(,"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}}})",
       "tool_choice", "invalid_value"},
      {"{" + m + R"(,"tools":[{"type":"retrieval"}]})", "tools[0].type", "unsupported_value"},
      {R"({"messages":"hi"})", "messages", "invalid_value"},
      {R"({"messages":[]})", "messages", "invalid_value"},
      {R"({"model":"m"})", "messages", "invalid_value"},
      {R"({"messages":[{"content":"x"}]})", "messages[0].role", "invalid_value"},
      {R"({"messages":[{"role":"user"}]})", "messages[0].content", "invalid_value"},
      {R"({"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]})",
       "messages[0].content[0].type", "unsupported_value"},
      {R"({"messages":[{"role":"assistant","tool_calls":[{"id":"c","function":{"arguments":"{}"}}]}]})",
       "messages[0].tool_calls[0].function.name", "invalid_value"},
  };
  for (const Case& c : cases) {
    const ApiError e = chat_error(c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.param, c.param) << c.body << " -> " << e.message;
    EXPECT_EQ(e.code, c.code) << c.body;
    EXPECT_NE(e.message.find(c.param.substr(0, c.param.find('['))), std::string::npos) << e.message;
  }
}

TEST(HttpRequest, MalformedJsonIsInvalidJson) {
  for (const char* body : {"", "{", "[1,2]", "\"text\"", "{\"messages\":[}", "{\"a\":1,}"}) {
    const ApiError e = chat_error(body);
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "invalid_json") << body;
    EXPECT_TRUE(e.param.empty());
  }
}

TEST(HttpRequest, CompletionPromptForms) {
  CompletionRequest r;
  ASSERT_FALSE(parse_completion_request(R"({"prompt":"hi","logprobs":3,"echo":true})", r));
  EXPECT_EQ(r.prompt_text, "hi");
  EXPECT_TRUE(r.gen.logprobs && r.echo);
  EXPECT_EQ(r.gen.top_logprobs, 3);
  for (const char* body : {R"({"prompt":[1,2,3]})", R"({"prompt":[[1,2,3]]})"}) {
    CompletionRequest t;
    ASSERT_FALSE(parse_completion_request(body, t)) << body;
    EXPECT_TRUE(t.prompt_is_tokens);
    EXPECT_EQ(t.prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  }
  CompletionRequest one;
  ASSERT_FALSE(parse_completion_request(R"({"prompt":["only"]})", one));
  EXPECT_EQ(one.prompt_text, "only");
  for (const char* body : {R"({"prompt":["a","b"]})", R"({"prompt":[]})", R"({"prompt":[1,-2]})", R"({"prompt":{}})",
                           R"({"max_tokens":3})", R"({"prompt":"a","suffix":"b"})", R"({"prompt":"a","logprobs":30})"}) {
    CompletionRequest bad;
    const auto e = parse_completion_request(body, bad);
    ASSERT_TRUE(e) << body;
    EXPECT_EQ(e->status, 400);
  }
}

TEST(HttpRequest, TokenizeAndDetokenize) {
  TokenizeRequest t;
  ASSERT_FALSE(parse_tokenize_request(R"({"prompt":"hi","add_special_tokens":false})", t));
  EXPECT_FALSE(t.chat);
  EXPECT_FALSE(t.add_special_tokens);
  TokenizeRequest c;
  ASSERT_FALSE(parse_tokenize_request(R"({"messages":[{"role":"user","content":"x"}],"add_generation_prompt":false})", c));
  EXPECT_TRUE(c.chat);
  EXPECT_FALSE(c.add_generation_prompt);
  TokenizeRequest both;
  EXPECT_TRUE(parse_tokenize_request(R"({"prompt":"a","messages":[{"role":"user","content":"x"}]})", both));
  DetokenizeRequest d;
  ASSERT_FALSE(parse_detokenize_request(R"({"tokens":[0,1]})", d));
  EXPECT_EQ(d.tokens, (std::vector<int32_t>{0, 1}));
  DetokenizeRequest bad;
  EXPECT_EQ(parse_detokenize_request(R"({"tokens":["a"]})", bad)->param, "tokens[0]");
}

TEST(HttpAuth, KeysAreComparedWholly) {
  EXPECT_TRUE(constant_time_equal("secret", "secret"));
  EXPECT_FALSE(constant_time_equal("secret", "secreT"));
  EXPECT_FALSE(constant_time_equal("secret", "secret2"));
  EXPECT_FALSE(constant_time_equal("", "x"));
  EXPECT_TRUE(api_key_allowed({}, std::nullopt));
  EXPECT_TRUE(api_key_allowed({"a", "b"}, std::string_view("b")));
  EXPECT_FALSE(api_key_allowed({"a", "b"}, std::string_view("c")));
  EXPECT_FALSE(api_key_allowed({"a"}, std::nullopt));
  EXPECT_FALSE(api_key_allowed({"a"}, std::string_view("")));
  EXPECT_EQ(presented_api_key("Bearer abc", ""), "abc");
  EXPECT_EQ(presented_api_key("bearer   abc ", ""), "abc");
  EXPECT_EQ(presented_api_key("Basic abc", "k"), "");  // a wrong scheme presents no usable key
  EXPECT_EQ(presented_api_key("", "k"), "k");
  EXPECT_FALSE(presented_api_key("", "").has_value());
}

TEST(HttpAuth, CorsOrigins) {
  EXPECT_EQ(cors_allow_origin({}, "https://a"), "");
  EXPECT_EQ(cors_allow_origin({"*"}, "https://a"), "*");
  EXPECT_EQ(cors_allow_origin({"https://a"}, "https://a"), "https://a");
  EXPECT_EQ(cors_allow_origin({"https://a"}, "https://b"), "");
  EXPECT_EQ(cors_allow_origin({"https://a"}, ""), "");
}

TEST(HttpOptions, CommandLine) {
  bool help = false;
  const ServerOptions o = parse_server_options({"--port", "9000", "--api-key=k", "--ctx", "4096", "--max-num-seqs", "8",
                                                "--served-model-name", "demo", "--cors-origin", "*", "--heartbeat", "0.5"},
                                               "default.gguf", help);
  EXPECT_FALSE(help);
  EXPECT_EQ(o.port, 9000);
  EXPECT_EQ(o.service.model_path, "default.gguf");
  EXPECT_EQ(o.api_keys, std::vector<std::string>{"k"});
  EXPECT_EQ(o.service.ctx, 4096);
  EXPECT_EQ(o.service.max_num_seqs, 8);
  EXPECT_EQ(o.service.served_model_name, "demo");
  EXPECT_EQ(o.cors_origins, std::vector<std::string>{"*"});
  EXPECT_EQ(o.limits.heartbeat_ms, 500);
  parse_server_options({"-h"}, "m", help);
  EXPECT_TRUE(help);
  auto fails = [](std::vector<std::string> args, const std::string& needle) {
    bool h = false;
    try {
      parse_server_options(args, "m", h);
      ADD_FAILURE() << "accepted " << args[0];
    } catch (const LoadError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  fails({"--port", "70000"}, "--port");
  fails({"--port"}, "needs a value");
  fails({"--bogus", "1"}, "unknown option --bogus");
  fails({"--ctx", "abc"}, "--ctx");
  fails({"--api-key", ""}, "--api-key");
  fails({"--reasoning-effort", "huge"}, "--reasoning-effort");
}

}  // namespace
}  // namespace ds4::http
