// Unit tests of the load-test workload: length specs, validation errors, deterministic bodies,
// exact prompt word counts, depth in a system message, the shared-prefix fraction, uniform lengths,
// ignore_eos / extra body, and JSONL datasets (prompt, messages, per-line max_tokens, bad lines).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <simdjson.h>

#include "loadtest/workload.h"

namespace lt = ds4::loadtest;

namespace {

std::vector<std::string> words_of(std::string_view text) {
  std::istringstream ss{std::string(text)};
  std::vector<std::string> w;
  for (std::string s; ss >> s;) w.push_back(s);
  return w;
}

struct Parsed {
  std::string system, user, prompt;
  int64_t max_tokens = 0;
  bool ignore_eos = false, stream = false, include_usage = false;
  double temperature = -1;
};

Parsed parse_body(const std::string& body) {
  simdjson::dom::parser parser;
  simdjson::dom::element root = parser.parse(body).value();  // throws on invalid JSON
  Parsed p;
  p.max_tokens = root["max_tokens"].get_int64().value();
  p.stream = root["stream"].get_bool().value();
  p.include_usage = root["stream_options"]["include_usage"].get_bool().value();
  bool b = false;
  if (root["ignore_eos"].get_bool().get(b) == simdjson::SUCCESS) p.ignore_eos = b;
  double t = 0;
  if (root["temperature"].get_double().get(t) == simdjson::SUCCESS) p.temperature = t;
  std::string_view s;
  if (root["prompt"].get_string().get(s) == simdjson::SUCCESS) p.prompt = s;
  simdjson::dom::array msgs;
  if (root["messages"].get_array().get(msgs) == simdjson::SUCCESS) {
    for (simdjson::dom::element m : msgs) {
      std::string_view role = m["role"].get_string().value();
      std::string_view content = m["content"].get_string().value();
      (role == "system" ? p.system : p.user) = std::string(content);
    }
  }
  return p;
}

lt::WorkloadSpec spec() {
  lt::WorkloadSpec s;
  s.model = "m";
  return s;
}

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST(LoadtestWorkload, LengthSpecs) {
  lt::LengthSpec l;
  EXPECT_EQ(lt::parse_length_spec("128", "--x", 1, &l), "");
  EXPECT_EQ(l.min, 128);
  EXPECT_EQ(l.max, 128);
  EXPECT_EQ(lt::parse_length_spec("16:64", "--x", 1, &l), "");
  EXPECT_EQ(l.min, 16);
  EXPECT_EQ(l.max, 64);
  EXPECT_NE(lt::parse_length_spec("64:16", "--x", 1, &l), "");
  EXPECT_NE(lt::parse_length_spec("0", "--x", 1, &l), "");
  EXPECT_NE(lt::parse_length_spec("abc", "--x", 1, &l).find("--x"), std::string::npos);
  EXPECT_NE(lt::parse_length_spec("1:", "--x", 1, &l), "");
}

TEST(LoadtestWorkload, ValidationErrors) {
  lt::Workload w;
  lt::WorkloadSpec s = spec();
  s.model = "";
  EXPECT_NE(w.init(s).find("model"), std::string::npos);
  s = spec();
  s.extra_body = "[1]";
  EXPECT_NE(w.init(s).find("--extra-body"), std::string::npos);
  s = spec();
  s.shared_prefix = 1.5;
  EXPECT_NE(w.init(s).find("--shared-prefix"), std::string::npos);
  s = spec();
  s.dataset_path = "/nonexistent/file.jsonl";
  EXPECT_NE(w.init(s).find("cannot open"), std::string::npos);
}

TEST(LoadtestWorkload, ChatBodyHasExactWordCountsAndIsDeterministic) {
  lt::WorkloadSpec s = spec();
  s.input = {200, 200};
  s.output = {33, 33};
  s.depth_tokens = 50;
  lt::Workload w;
  ASSERT_EQ(w.init(s), "");
  lt::RequestSpec a = w.make(7), b = w.make(7), c = w.make(8);
  EXPECT_EQ(a.body, b.body);
  EXPECT_NE(a.body, c.body);
  EXPECT_EQ(a.expected_input_tokens, 250);
  EXPECT_EQ(a.max_tokens, 33);
  Parsed p = parse_body(a.body);
  EXPECT_EQ(words_of(p.system).size(), 50u);
  EXPECT_EQ(words_of(p.user).size(), 200u);
  EXPECT_EQ(p.max_tokens, 33);
  EXPECT_TRUE(p.stream);
  EXPECT_TRUE(p.include_usage);
  EXPECT_FALSE(p.ignore_eos);
  std::set<std::string> vocab(lt::Workload::words().begin(), lt::Workload::words().end());
  for (const std::string& word : words_of(p.user)) EXPECT_TRUE(vocab.count(word)) << word;
}

TEST(LoadtestWorkload, SharedPrefixFraction) {
  lt::WorkloadSpec s = spec();
  s.endpoint = lt::Endpoint::kCompletions;
  s.input = {400, 400};
  s.shared_prefix = 0.25;
  lt::Workload w;
  ASSERT_EQ(w.init(s), "");
  std::vector<std::string> a = words_of(parse_body(w.make(1).body).prompt);
  std::vector<std::string> b = words_of(parse_body(w.make(2).body).prompt);
  ASSERT_EQ(a.size(), 400u);
  ASSERT_EQ(b.size(), 400u);
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + 100, b.begin()));  // 25% of 400 shared
  EXPECT_FALSE(std::equal(a.begin() + 100, a.end(), b.begin() + 100));
  size_t same_after = 0;
  for (size_t i = 100; i < 400; ++i) same_after += a[i] == b[i];
  EXPECT_LT(same_after, 30u);  // unique parts agree only by chance (~1/141 per word)
  s.shared_prefix = 0;
  ASSERT_EQ(w.init(s), "");
  a = words_of(parse_body(w.make(1).body).prompt);
  b = words_of(parse_body(w.make(2).body).prompt);
  EXPECT_FALSE(std::equal(a.begin(), a.begin() + 10, b.begin()));  // no sharing from the start
}

TEST(LoadtestWorkload, UniformLengthsCoverTheRange) {
  lt::WorkloadSpec s = spec();
  s.input = {10, 13};
  s.output = {5, 6};
  s.ignore_eos = true;
  s.extra_body = R"({ "temperature" : 0.5 })";
  lt::Workload w;
  ASSERT_EQ(w.init(s), "");
  std::set<int64_t> in, out;
  for (int64_t i = 0; i < 200; ++i) {
    lt::RequestSpec r = w.make(i);
    Parsed p = parse_body(r.body);
    in.insert(static_cast<int64_t>(words_of(p.user).size()));
    out.insert(p.max_tokens);
    EXPECT_EQ(r.expected_input_tokens, static_cast<int64_t>(words_of(p.user).size()));
    EXPECT_TRUE(p.ignore_eos);
    EXPECT_DOUBLE_EQ(p.temperature, 0.5);
  }
  EXPECT_EQ(in, (std::set<int64_t>{10, 11, 12, 13}));
  EXPECT_EQ(out, (std::set<int64_t>{5, 6}));
}

TEST(LoadtestWorkload, JsonlDataset) {
  std::string path = write_temp("lt_dataset.jsonl",
                                "{\"prompt\": \"hello there\", \"max_tokens\": 7}\n\n"
                                "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n");
  lt::WorkloadSpec s = spec();
  s.dataset_path = path;
  s.output = {9, 9};
  lt::Workload w;
  ASSERT_EQ(w.init(s), "");
  Parsed p0 = parse_body(w.make(0).body), p1 = parse_body(w.make(1).body), p2 = parse_body(w.make(2).body);
  EXPECT_EQ(p0.user, "hello there");
  EXPECT_EQ(p0.max_tokens, 7);
  EXPECT_EQ(p1.user, "hi");
  EXPECT_EQ(p1.max_tokens, 9);
  EXPECT_EQ(p2.user, "hello there");  // lines repeat in order
  EXPECT_EQ(w.make(0).expected_input_tokens, -1);

  s.endpoint = lt::Endpoint::kCompletions;
  EXPECT_NE(w.init(s).find(":3: \"messages\" needs --endpoint chat"), std::string::npos);
  s.dataset_path = write_temp("lt_bad.jsonl", "{\"prompt\": \"a\"}\n{\"nothing\": 1}\n");
  EXPECT_NE(w.init(s).find("lt_bad.jsonl:2: needs"), std::string::npos);
  s.dataset_path = write_temp("lt_bad2.jsonl", "not json\n");
  EXPECT_NE(w.init(s).find(":1: not a JSON object"), std::string::npos);
  s.dataset_path = write_temp("lt_empty.jsonl", "\n\n");
  EXPECT_NE(w.init(s).find("has no requests"), std::string::npos);
  s.dataset_path = write_temp("lt_bad3.jsonl", "{\"prompt\": \"a\", \"max_tokens\": 0}\n");
  EXPECT_NE(w.init(s).find("max_tokens must be >= 1"), std::string::npos);
}
