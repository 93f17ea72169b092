// ds4serve-bench as a program (scheduler/tools/): the closed loop (--users) on the demo model runs
// every level, completes requests in each and writes ds4serve-load's JSON and CSV with the fields
// scripts read; bad options fail with a message naming the problem; the all-at-once mode still runs.
// Runs the built binary (DS4_BINARY_DIR/scheduler/ds4serve-bench); a few seconds on the CPU.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace {

struct BenchRun {
  int rc = -1;
  std::string output;  // stdout and stderr
};

std::string bench_path() { return std::string(DS4_BINARY_DIR) + "/scheduler/ds4serve-bench"; }

BenchRun run_bench(const std::string& args) {
  BenchRun r;
  FILE* p = ::popen((bench_path() + " " + args + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::stringstream ss(s);
  while (std::getline(ss, item, sep)) out.push_back(item);
  return out;
}

// The whole number right after the first `key` at or after `from` (-1 when absent).
int64_t number_after(const std::string& text, size_t from, const std::string& key) {
  const size_t at = text.find(key, from);
  return at == std::string::npos ? -1 : std::strtoll(text.c_str() + at + key.size(), nullptr, 10);
}

class BenchCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(bench_path().c_str(), X_OK) != 0) GTEST_FAIL() << "build ds4serve-bench first: " << bench_path();
    char tmpl[] = "/tmp/ds4_bench_cli_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  std::string dir_;
};

// The CSV columns a level row has, by header name.
std::vector<std::pair<std::string, std::string>> csv_row(const std::vector<std::string>& header, const std::string& line) {
  const std::vector<std::string> cells = split(line, ',');
  std::vector<std::pair<std::string, std::string>> row;
  for (size_t i = 0; i < header.size() && i < cells.size(); ++i) row.emplace_back(header[i], cells[i]);
  return row;
}

double cell(const std::vector<std::pair<std::string, std::string>>& row, const std::string& name) {
  for (const auto& [k, v] : row)
    if (k == name) return std::strtod(v.c_str(), nullptr);
  ADD_FAILURE() << "no column " << name;
  return -1;
}

TEST_F(BenchCli, ClosedLoopRunsEveryLevelAndWritesTheReports) {
  const std::string json = dir_ + "/levels.json", csv = dir_ + "/levels.csv";
  const BenchRun r = run_bench("--users 1,3 --level-time 0.4 --prompt-len 8 --output-len 4 --warmup-requests 1 --threads 2"
                          " --out " + json + " --out " + csv);
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("warm-up: 1/1 ok"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("c=3"), std::string::npos) << r.output;

  const std::vector<std::string> lines = split(read_file(csv), '\n');
  ASSERT_EQ(lines.size(), 3u) << read_file(csv);
  const std::vector<std::string> header = split(lines[0], ',');
  const int users[] = {1, 3};
  for (int level = 0; level < 2; ++level) {
    const auto row = csv_row(header, lines[level + 1]);
    EXPECT_EQ(cell(row, "concurrency"), users[level]);
    EXPECT_GE(cell(row, "completed"), users[level]) << "each user's first request runs to the end";
    EXPECT_EQ(cell(row, "failed"), 0);
    EXPECT_GT(cell(row, "output_tok_per_s"), 0);
    // Every request: 8 prompt ids and 4 output tokens, so the level's token rates are 2:1.
    EXPECT_NEAR(cell(row, "input_tok_per_s") / cell(row, "output_tok_per_s"), 2.0, 1e-9);
    EXPECT_GT(cell(row, "ttft_ms_p50"), 0);
    EXPECT_GE(cell(row, "ttft_ms_p99"), cell(row, "ttft_ms_p50"));
    EXPECT_GT(cell(row, "itl_ms_p50"), 0);
    EXPECT_GE(cell(row, "itl_ms_p99"), cell(row, "itl_ms_p50"));
    EXPECT_LE(cell(row, "peak_concurrency"), users[level]);
  }

  const std::string j = read_file(json);
  EXPECT_NE(j.find("\"tool\":\"ds4serve-bench\""), std::string::npos) << j.substr(0, 300);
  int levels = 0;
  for (size_t at = j.find("{\"mode\":\"closed\""); at != std::string::npos; at = j.find("{\"mode\":\"closed\"", at + 1)) {
    ++levels;
    const int users = int(number_after(j, at, "\"concurrency\":"));
    const int64_t completed = number_after(j, at, "\"completed\":");
    EXPECT_GE(completed, users);
    EXPECT_EQ(number_after(j, at, "\"failed\":"), 0);
    EXPECT_EQ(number_after(j, at, "\"tokens\":{\"input\":"), 8 * completed);
    EXPECT_EQ(number_after(j, at, "\"output\":"), 4 * completed);
  }
  for (const char* field : {"\"ttft_ms\":{", "\"itl_ms\":{", "\"tpot_ms\":{", "\"output_tok_per_s\":", "engine_steps"})
    EXPECT_NE(j.find(field), std::string::npos) << field;
}

TEST_F(BenchCli, BadOptionsFailWithAMessage) {
  const std::pair<const char*, const char*> cases[] = {
      {"--users 0", "--users: '0'"},
      {"--users abc", "--users: 'abc'"},
      {"--users 1,,2", "--users: ''"},
      {"--users 1 --level-time -1", "--level-time: '-1'"},
      {"--users 1 --level-time 0", "--level-time: '0'"},
      {"--users 1 --synth full", "--synth generates the weights in GPU memory"},
      {"--users 1 --out x.txt", "must end in .json or .csv"},
      {"--level-time 5", "give --users"},
      {"--users 1 --mtp-oracle 0.5", "--mtp-oracle runs the all-at-once mode only"},
  };
  for (const auto& [args, message] : cases) {
    const BenchRun r = run_bench(args);
    EXPECT_EQ(r.rc, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("ds4serve-bench: error: "), std::string::npos) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << args << "\n" << r.output;
  }
}

// Without CUDA the synthetic model cannot be generated; with it, an unknown preset is named.
TEST_F(BenchCli, SynthOnCudaNamesWhatIsMissing) {
  const BenchRun r = run_bench("--backend cuda --synth nosuchpreset --users 1");
  EXPECT_EQ(r.rc, 1) << r.output;
  const bool no_cuda = r.output.find("built without CUDA") != std::string::npos;
  const bool bad_preset = r.output.find("nosuchpreset") != std::string::npos;
  EXPECT_TRUE(no_cuda || bad_preset) << r.output;
}

TEST_F(BenchCli, AllAtOnceModeStillRuns) {
  const BenchRun r = run_bench("--requests 2 --prompt-len 8 --output-len 3 --threads 2");
  ASSERT_EQ(r.rc, 0) << r.output;
  EXPECT_NE(r.output.find("2 requests x prompt 8..8"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("decode:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(16 prompt + 6 output tokens)"), std::string::npos) << r.output;
}

}  // namespace
