// Hardening limits and flags (http/request_limits.h, http/hardening_options.h): each per-request
// limit refuses one over and accepts exactly at the limit with a 400 naming the parameter; the log
// escaper neutralises control bytes and cuts long text; the hardening flags parse, have the
// documented defaults and name the flag on a bad value.
#include <gtest/gtest.h>

#include "engine/load_error.h"
#include "http/hardening_options.h"
#include "http/request_limits.h"
#include "http/server_options.h"

namespace ds4::http {
namespace {

ChatRequest chat_with(size_t messages, size_t tools, size_t stops, size_t stop_bytes = 1) {
  ChatRequest r;
  r.messages.resize(messages);
  r.tools.resize(tools, "{}");
  r.gen.stop.assign(stops, std::string(stop_bytes, 'x'));
  return r;
}

TEST(HttpLimits, EachLimitIsInclusiveAndNamesTheParameter) {
  RequestLimits l;
  l.max_messages = 3, l.max_tools = 2, l.max_stop = 4, l.max_stop_bytes = 5, l.max_tokens = 100;
  EXPECT_FALSE(check_chat_limits(l, chat_with(3, 2, 4, 5)));
  const struct {
    ChatRequest req;
    const char* param;
  } cases[] = {{chat_with(4, 0, 0), "messages"},
               {chat_with(1, 3, 0), "tools"},
               {chat_with(1, 0, 5), "stop"},
               {chat_with(1, 0, 1, 6), "stop"}};
  for (const auto& c : cases) {
    const auto e = check_chat_limits(l, c.req);
    ASSERT_TRUE(e) << c.param;
    EXPECT_EQ(e->status, 400);
    EXPECT_EQ(e->param, c.param);
    EXPECT_EQ(e->code, "limit_exceeded");
    EXPECT_NE(e->message.find("at most"), std::string::npos) << e->message;
  }
  GenerationFields g;
  g.max_tokens = 100;
  EXPECT_FALSE(check_generation_limits(l, g));
  g.max_tokens = 101;
  const auto e = check_generation_limits(l, g);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "max_tokens");
  l.max_tokens = 0;  // no cap beyond the context
  EXPECT_FALSE(check_generation_limits(l, g));
}

TEST(HttpLimits, LoggableEscapesControlBytesAndCuts) {
  EXPECT_EQ(loggable("plain text", 100), "plain text");
  EXPECT_EQ(loggable("a\nb\r\x1b[0m\\", 100), "a\\x0ab\\x0d\\x1b[0m\\x5c");
  EXPECT_EQ(loggable("h\xc3\xa9llo", 100), "h\xc3\xa9llo");  // UTF-8 stays readable
  EXPECT_EQ(loggable(std::string(50, 'a'), 10), std::string(10, 'a') + "...");
  EXPECT_EQ(loggable("", 10), "");
}

TEST(HttpLimits, FlagsParseWithDefaults) {
  bool help = false;
  const ServerOptions d = parse_server_options({}, "m", help);
  EXPECT_EQ(d.hardening.request.max_stop, 64u);
  EXPECT_EQ(d.hardening.request.max_tools, 256u);
  EXPECT_EQ(d.hardening.request.max_messages, 4096u);
  EXPECT_EQ(d.hardening.request.max_tokens, 0);
  EXPECT_EQ(d.hardening.health_access, EndpointAccess::kPublic);
  EXPECT_EQ(d.hardening.metrics_access, EndpointAccess::kPublic);
  EXPECT_FALSE(d.hardening.log_prompts);
  EXPECT_EQ(d.service.max_waiting, 256);
  EXPECT_EQ(d.hardening.header_timeout_seconds, 10);
  EXPECT_EQ(d.limits.max_connections, 1024);
  const ServerOptions o = parse_server_options(
      {"--max-tokens", "50", "--max-stop", "3", "--max-stop-bytes=7", "--max-tools", "9", "--max-messages", "11",
       "--log-prompts", "--api-key", "k", "--health-access", "key", "--metrics-access", "off", "--max-waiting", "0",
       "--header-timeout", "3", "--max-connections", "50"},
      "m", help);
  EXPECT_EQ(o.hardening.request.max_tokens, 50);
  EXPECT_EQ(o.hardening.request.max_stop, 3u);
  EXPECT_EQ(o.hardening.request.max_stop_bytes, 7u);
  EXPECT_EQ(o.hardening.request.max_tools, 9u);
  EXPECT_EQ(o.hardening.request.max_messages, 11u);
  EXPECT_TRUE(o.hardening.log_prompts);
  EXPECT_EQ(o.hardening.health_access, EndpointAccess::kKey);
  EXPECT_EQ(o.hardening.metrics_access, EndpointAccess::kOff);
  EXPECT_EQ(o.service.max_waiting, 0);
  EXPECT_EQ(o.hardening.header_timeout_seconds, 3);
  EXPECT_EQ(o.limits.max_connections, 50);
  EXPECT_EQ(o.api_keys, std::vector<std::string>{"k"});
}

TEST(HttpLimits, BadFlagValuesNameTheFlag) {
  auto fails = [](std::vector<std::string> args, const std::string& needle) {
    bool h = false;
    try {
      parse_server_options(args, "m", h);
      ADD_FAILURE() << "accepted " << args[0];
    } catch (const LoadError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  fails({"--max-tools", "0"}, "--max-tools");
  fails({"--max-stop", "-1"}, "--max-stop");
  fails({"--max-tokens", "lots"}, "--max-tokens");
  fails({"--max-waiting", "-5"}, "--max-waiting");
  fails({"--metrics-access", "private"}, "--metrics-access");
  fails({"--health-access", "off"}, "--health-access");
  fails({"--metrics-access", "key"}, "no --api-key");
  fails({"--max-messages"}, "needs a value");
  fails({"--header-timeout", "0"}, "--header-timeout");
}

}  // namespace
}  // namespace ds4::http
