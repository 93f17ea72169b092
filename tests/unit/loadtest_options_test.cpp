// Unit tests of ds4serve-load's command line: a full closed-loop and open-loop line, /v1 base URLs,
// --out file names, defaults for the number of requests, and the error for each kind of bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "loadtest/options.h"

namespace lt = ds4::loadtest;

namespace {

std::string parse(std::vector<std::string> args, lt::Options* o, const std::string& env_key = "") {
  args.insert(args.begin(), "ds4serve-load");
  return lt::parse_options(args, env_key, o);
}

}  // namespace

TEST(LoadtestOptions, ClosedLoopLine) {
  lt::Options o;
  ASSERT_EQ(parse({"--url", "http://127.0.0.1:8080/v1/", "--concurrency=1,2,4", "--input-tokens", "64:128",
                   "--output-tokens", "32", "--ignore-eos", "--slo", "ttft:500,tpot:40", "--metrics",
                   "--out", "/tmp/x", "--endpoint", "completions", "--depth", "100", "--shared-prefix", "0.5"},
                  &o, "envkey"),
            "");
  EXPECT_EQ(o.target.host, "127.0.0.1");
  EXPECT_EQ(o.target.port, "8080");
  EXPECT_EQ(o.target.base_path, "");  // /v1 dropped: the endpoint path carries it
  EXPECT_EQ(o.path, "/v1/completions");
  EXPECT_EQ(o.api_key, "envkey");
  EXPECT_EQ(o.mode, lt::LoadMode::kClosed);
  EXPECT_EQ(o.concurrency, (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(o.workload.input.min, 64);
  EXPECT_EQ(o.workload.input.max, 128);
  EXPECT_TRUE(o.workload.ignore_eos);
  EXPECT_EQ(*o.slo.tpot_ms, 40);
  EXPECT_TRUE(o.scrape_metrics);
  EXPECT_EQ(o.json_path, "/tmp/x/results.json");
  EXPECT_EQ(o.plot_path, "/tmp/x/results.png");
  EXPECT_EQ(o.workload.depth_tokens, 100);
  EXPECT_DOUBLE_EQ(o.workload.shared_prefix, 0.5);
  EXPECT_EQ(lt::default_requests(o, 4, 0), 16);
  EXPECT_EQ(lt::default_requests(o, 1, 0), 8);
}

TEST(LoadtestOptions, OpenLoopLine) {
  lt::Options o;
  ASSERT_EQ(parse({"--url", "http://localhost", "--rate", "0.5,2", "--burstiness", "inf",
                   "--max-concurrency", "8", "--duration", "30", "--api-key", "k", "--model", "m"},
                  &o, "envkey"),
            "");
  EXPECT_EQ(o.mode, lt::LoadMode::kOpen);
  EXPECT_EQ(o.target.port, "80");
  EXPECT_EQ(o.path, "/v1/chat/completions");
  EXPECT_EQ(o.rates, (std::vector<double>{0.5, 2}));
  EXPECT_TRUE(std::isinf(o.burstiness));
  EXPECT_EQ(o.max_concurrency, 8);
  EXPECT_EQ(o.api_key, "k");
  EXPECT_EQ(lt::default_requests(o, 0, 2), 0);  // the duration bounds the level
  o.duration_s = 0;
  EXPECT_EQ(lt::default_requests(o, 0, 2), 20);
}

TEST(LoadtestOptions, Errors) {
  lt::Options o;
  auto err = [&](std::vector<std::string> a) { return parse(std::move(a), &o); };
  EXPECT_NE(err({}).find("--url is required"), std::string::npos);
  EXPECT_NE(err({"--url", "https://x"}).find("https"), std::string::npos);
  EXPECT_NE(err({"--url", "http://x:99999"}).find("bad port"), std::string::npos);
  EXPECT_NE(err({"--url", "http://x", "--concurrency", "1,0"}).find("--concurrency"), std::string::npos);
  EXPECT_NE(err({"--url", "http://x", "--concurrency", "2", "--rate", "1"}).find("not both"), std::string::npos);
  EXPECT_NE(err({"--url", "http://x", "--max-concurrency", "2"}).find("--rate"), std::string::npos);
  EXPECT_NE(err({"--url", "http://x", "--rate", "-1"}).find("positive"), std::string::npos);
  EXPECT_NE(err({"--url", "http://x", "--endpoint", "responses"}).find("chat or completions"), std::string::npos);
  EXPECT_NE(err({"--url", "http://x", "--shared-prefix", "2"}).find("[0, 1]"), std::string::npos);
  EXPECT_NE(err({"--url", "http://x", "--bogus"}).find("unknown option '--bogus'"), std::string::npos);
  EXPECT_NE(err({"--url"}).find("needs a value"), std::string::npos);
  EXPECT_NE(err({"--url", "http://x", "--progress", "maybe"}).find("--progress"), std::string::npos);
  EXPECT_NE(err({"--url", "http://x", "--slo", "foo:1"}).find("unknown SLO"), std::string::npos);
  EXPECT_NE(err({"--url", "http://x", "--metrics-filter", "(unclosed"}).find("regular expression"), std::string::npos);
  EXPECT_NE(err({"--url", "http://x", "--plot", "it's.png"}).find("quote"), std::string::npos);
  EXPECT_EQ(err({"--help"}), "");
  EXPECT_TRUE(o.show_help);
}

TEST(LoadtestOptions, Ipv6AndBasePath) {
  lt::Options o;
  ASSERT_EQ(parse({"--url", "http://[::1]:9000/prefix"}, &o), "");
  EXPECT_EQ(o.target.host, "::1");
  EXPECT_EQ(o.target.port, "9000");
  EXPECT_EQ(o.target.base_path, "/prefix");
}
