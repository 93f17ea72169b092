// ServerMetrics: the exposition text has every family with its vLLM type and buckets, histograms
// are cumulative with +Inf == count, recorded values land in the right series, and the text
// follows format 0.0.4 (HELP/TYPE before samples, one group per family, trailing newline).
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "metrics/server_metrics.h"

namespace ds4 {
namespace {

MetricsConfig test_config() {
  return MetricsConfig{.model_name = "demo", .max_model_len = 4096, .kv_block_size_tokens = 256,
                       .kv_num_blocks = 64, .prefix_caching = true};
}

// name{labels} -> value, for every sample line.
std::map<std::string, double> samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

std::string type_of(const std::string& text, const std::string& family) {
  std::smatch m;
  const std::regex re("# TYPE " + family + " (\\w+)");
  return std::regex_search(text, m, re) ? m[1].str() : "";
}

TEST(MetricsBuckets, OneTwoFiveSeriesStopsAtMax) {
  EXPECT_EQ(buckets_1_2_5(1), (std::vector<double>{1}));
  EXPECT_EQ(buckets_1_2_5(50), (std::vector<double>{1, 2, 5, 10, 20, 50}));
  EXPECT_EQ(buckets_1_2_5(4096), (std::vector<double>{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000}));
}

TEST(ServerMetrics, EveryFamilyHasItsType) {
  ServerMetrics m(test_config());
  const std::string text = m.serialize();
  const std::map<std::string, std::string> expected = {
      {"ds4serve_num_requests_running", "gauge"},
      {"ds4serve_num_requests_waiting", "gauge"},
      {"ds4serve_kv_cache_usage_perc", "gauge"},
      {"ds4serve_cache_config_info", "gauge"},
      {"ds4serve_prefix_cache_queries_total", "counter"},
      {"ds4serve_prefix_cache_hits_total", "counter"},
      {"ds4serve_num_preemptions_total", "counter"},
      {"ds4serve_prompt_tokens_total", "counter"},
      {"ds4serve_generation_tokens_total", "counter"},
      {"ds4serve_request_success_total", "counter"},
      {"ds4serve_spec_decode_num_drafts_total", "counter"},
      {"ds4serve_spec_decode_num_draft_tokens_total", "counter"},
      {"ds4serve_spec_decode_num_accepted_tokens_total", "counter"},
      {"ds4serve_request_prompt_tokens", "histogram"},
      {"ds4serve_request_generation_tokens", "histogram"},
      {"ds4serve_request_max_num_generation_tokens", "histogram"},
      {"ds4serve_request_params_max_tokens", "histogram"},
      {"ds4serve_request_params_n", "histogram"},
      {"ds4serve_iteration_tokens", "histogram"},
      {"ds4serve_time_to_first_token_seconds", "histogram"},
      {"ds4serve_inter_token_latency_seconds", "histogram"},
      {"ds4serve_request_time_per_output_token_seconds", "histogram"},
      {"ds4serve_e2e_request_latency_seconds", "histogram"},
      {"ds4serve_request_queue_time_seconds", "histogram"},
      {"ds4serve_request_inference_time_seconds", "histogram"},
      {"ds4serve_request_prefill_time_seconds", "histogram"},
      {"ds4serve_request_decode_time_seconds", "histogram"},
      {"ds4serve_engine_step_seconds", "histogram"},
      {"ds4serve_engine_batch_size", "histogram"},
      {"ds4serve_engine_unique_experts_per_step", "histogram"},
      {"ds4serve_engine_weight_bytes_per_generated_token", "histogram"},
      {"ds4serve_engine_weight_bytes_read_total", "counter"},
      {"ds4serve_kv_blocks", "gauge"},
  };
  for (const auto& [family, type] : expected) EXPECT_EQ(type_of(text, family), type) << family;
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
}

TEST(ServerMetrics, VllmBucketsAreKept) {
  ServerMetrics m(test_config());
  const auto s = samples(m.serialize());
  // TTFT: 22 buckets from 1 ms to 2560 s; request latency: 0.3 s .. 7680 s; tokens: 1-2-5 up to the context.
  EXPECT_TRUE(s.count("ds4serve_time_to_first_token_seconds_bucket{model_name=\"demo\",le=\"0.001\"}"));
  EXPECT_TRUE(s.count("ds4serve_time_to_first_token_seconds_bucket{model_name=\"demo\",le=\"2560\"}"));
  EXPECT_TRUE(s.count("ds4serve_e2e_request_latency_seconds_bucket{model_name=\"demo\",le=\"7680\"}"));
  EXPECT_TRUE(s.count("ds4serve_request_prompt_tokens_bucket{model_name=\"demo\",le=\"2000\"}"));
  EXPECT_FALSE(s.count("ds4serve_request_prompt_tokens_bucket{model_name=\"demo\",le=\"5000\"}"));
  EXPECT_TRUE(s.count("ds4serve_iteration_tokens_bucket{model_name=\"demo\",le=\"16384\"}"));
  EXPECT_TRUE(s.count("ds4serve_inter_token_latency_seconds_bucket{model_name=\"demo\",le=\"80\"}"));
}

TEST(ServerMetrics, RecordedRequestsAppearInTheirSeries) {
  ServerMetrics m(test_config());
  m.record_first_token(0.03, 12);
  const double gaps[] = {0.02, 0.2, 0.02};
  m.record_generated(4, gaps, 3);
  m.record_finished(FinishedRequest{.finished_reason = "length", .prompt_tokens = 12, .generation_tokens = 4,
                                    .max_tokens_param = 4, .e2e_seconds = 0.4, .queue_seconds = 0.01,
                                    .prefill_seconds = 0.02, .decode_seconds = 0.24, .inference_seconds = 0.26});
  m.record_http("/v1/chat/completions", 200, 0.4);
  m.record_http("/v1/chat/completions", 400, 0.001);
  m.record_http("/v1/chat/completions", 200, 0.3);
  const auto s = samples(m.serialize());
  const std::string d = "model_name=\"demo\"";
  EXPECT_EQ(s.at("ds4serve_prompt_tokens_total{" + d + "}"), 12);
  EXPECT_EQ(s.at("ds4serve_generation_tokens_total{" + d + "}"), 4);
  EXPECT_EQ(s.at("ds4serve_request_success_total{finished_reason=\"length\"," + d + "}"), 1);
  EXPECT_EQ(s.at("ds4serve_request_success_total{finished_reason=\"stop\"," + d + "}"), 0);
  EXPECT_EQ(s.at("ds4serve_inter_token_latency_seconds_count{" + d + "}"), 3);
  EXPECT_EQ(s.at("ds4serve_inter_token_latency_seconds_bucket{" + d + ",le=\"0.025\"}"), 2);
  EXPECT_EQ(s.at("ds4serve_inter_token_latency_seconds_bucket{" + d + ",le=\"0.2\"}"), 3);
  EXPECT_NEAR(s.at("ds4serve_inter_token_latency_seconds_sum{" + d + "}"), 0.24, 1e-9);
  // Mean TPOT of the request: decode time / (tokens - 1) = 0.08 s.
  EXPECT_NEAR(s.at("ds4serve_request_time_per_output_token_seconds_sum{" + d + "}"), 0.08, 1e-9);
  EXPECT_EQ(s.at("ds4serve_request_queue_time_seconds_count{" + d + "}"), 1);
  EXPECT_EQ(s.at("ds4serve_http_requests_total{" + d + ",route=\"/v1/chat/completions\",status=\"200\"}"), 2);
  EXPECT_EQ(s.at("ds4serve_http_requests_total{" + d + ",route=\"/v1/chat/completions\",status=\"400\"}"), 1);
}

TEST(ServerMetrics, HistogramsAreCumulativeWithInfEqualToCount) {
  ServerMetrics m(test_config());
  for (double v : {0.0001, 0.03, 0.5, 3.0, 5000.0}) m.record_first_token(v, 1);
  const std::string text = m.serialize();
  std::istringstream in(text);
  std::string line;
  double previous = -1, inf = -1;
  while (std::getline(in, line)) {
    if (line.rfind("ds4serve_time_to_first_token_seconds_bucket", 0) != 0) continue;
    const double v = std::stod(line.substr(line.rfind(' ') + 1));
    EXPECT_GE(v, previous) << line;
    previous = v;
    if (line.find("le=\"+Inf\"") != std::string::npos) inf = v;
  }
  const auto s = samples(text);
  EXPECT_EQ(inf, 5);
  EXPECT_EQ(s.at("ds4serve_time_to_first_token_seconds_count{model_name=\"demo\"}"), 5);
}

TEST(ServerMetrics, StepsAndGaugesAreRecorded) {
  ServerMetrics m(test_config());
  m.set_collect_hook([&m] {
    m.set_engine_gauges(EngineGauges{.requests_running = 3, .requests_waiting = 2, .kv_usage_fraction = 0.25,
                                     .kv_blocks_used = 16, .kv_blocks_cached = 4, .kv_blocks_free = 44,
                                     .preemptions_total = 1, .prefix_cache_queries_total = 256,
                                     .prefix_cache_hits_total = 128});
  });
  m.record_step(StepSample{.step_seconds = 0.02, .num_sequences = 3, .num_tokens = 130, .unique_experts = 40,
                           .weight_bytes_read = 3000, .generated_tokens = 3, .spec_drafts = 2, .spec_draft_tokens = 2, .spec_accepted_tokens = 1,
                           .spec_accepted_per_position = {1}});
  const auto s = samples(m.serialize());
  const std::string d = "model_name=\"demo\"";
  EXPECT_EQ(s.at("ds4serve_num_requests_running{" + d + "}"), 3);
  EXPECT_EQ(s.at("ds4serve_num_requests_waiting{" + d + "}"), 2);
  EXPECT_EQ(s.at("ds4serve_kv_cache_usage_perc{" + d + "}"), 0.25);
  EXPECT_EQ(s.at("ds4serve_kv_blocks{" + d + ",state=\"free\"}"), 44);
  EXPECT_EQ(s.at("ds4serve_num_preemptions_total{" + d + "}"), 1);
  EXPECT_EQ(s.at("ds4serve_prefix_cache_hits_total{" + d + "}"), 128);
  EXPECT_EQ(s.at("ds4serve_engine_weight_bytes_read_total{" + d + "}"), 3000);
  EXPECT_EQ(s.at("ds4serve_engine_weight_bytes_per_generated_token_sum{" + d + "}"), 1000);
  EXPECT_EQ(s.at("ds4serve_iteration_tokens_bucket{" + d + ",le=\"128\"}"), 0);
  EXPECT_EQ(s.at("ds4serve_iteration_tokens_bucket{" + d + ",le=\"256\"}"), 1);
  EXPECT_EQ(s.at("ds4serve_spec_decode_num_accepted_tokens_per_pos_total{" + d + ",position=\"0\"}"), 1);
  // Cumulative engine counters advance by their growth only: a second scrape with the same totals
  // adds nothing.
  const auto again = samples(m.serialize());
  EXPECT_EQ(again.at("ds4serve_num_preemptions_total{" + d + "}"), 1);
  EXPECT_EQ(again.at("ds4serve_prefix_cache_queries_total{" + d + "}"), 256);
  EXPECT_EQ(s.at("ds4serve_cache_config_info{block_size=\"256\",enable_prefix_caching=\"True\"," + d +
                 ",num_gpu_blocks=\"64\"}"),
            1);
}

TEST(ServerMetrics, StepLaunchesAreCountedByKind) {
  ServerMetrics m(test_config());
  const std::string d = "model_name=\"demo\"";
  auto count = [&](const char* kind) {
    return samples(m.serialize()).at("ds4serve_engine_step_launches_total{launch=\"" + std::string(kind) + "\"," + d + "}");
  };
  EXPECT_EQ(count("graph_capture"), 0);  // every kind is present from the start
  StepSample step;
  step.launch = "graph_capture";
  m.record_step(step);
  step.launch = "graph_replay";
  for (int i = 0; i < 3; ++i) m.record_step(step);
  m.record_step(StepSample{});
  EXPECT_EQ(count("direct"), 1);
  EXPECT_EQ(count("graph_replay"), 3);
  EXPECT_EQ(count("graph_capture"), 1);
  EXPECT_EQ(samples(m.serialize()).at("ds4serve_engine_steps_total{" + d + "}"), 5);
}

TEST(ServerMetrics, FamiliesAreContiguousWithTypeBeforeSamples) {
  ServerMetrics m(test_config());
  m.record_http("/health", 200, 0.001);
  const std::string text = m.serialize();
  std::istringstream in(text);
  std::string line, current;
  std::map<std::string, int> groups;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      current = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_EQ(++groups[current], 1) << "family " << current << " appears twice";
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    const std::string name = line.substr(0, line.find_first_of("{ "));
    EXPECT_EQ(name.rfind(current, 0), 0u) << name << " outside its family " << current;
  }
}

}  // namespace
}  // namespace ds4
