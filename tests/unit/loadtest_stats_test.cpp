// Unit tests of the load tester's statistics on fixed data: percentiles (numpy's linear method),
// summaries, SLO parsing and goodput, and the per-level aggregates (rates, ITL pooling, TPOT,
// llama-benchy decode rate, peak concurrency, error keys, usage/event mismatches).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "loadtest/stats.h"

namespace lt = ds4::loadtest;

TEST(LoadtestPercentile, MatchesNumpyLinear) {
  std::vector<double> v = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  // numpy.percentile(range(1, 11), [0, 50, 90, 99, 100]) = 1, 5.5, 9.1, 9.91, 10
  EXPECT_DOUBLE_EQ(lt::percentile_sorted(v, 0), 1);
  EXPECT_DOUBLE_EQ(lt::percentile_sorted(v, 50), 5.5);
  EXPECT_NEAR(lt::percentile_sorted(v, 90), 9.1, 1e-12);
  EXPECT_NEAR(lt::percentile_sorted(v, 99), 9.91, 1e-12);
  EXPECT_DOUBLE_EQ(lt::percentile_sorted(v, 100), 10);
  std::vector<double> two = {0, 10};
  EXPECT_DOUBLE_EQ(lt::percentile_sorted(two, 25), 2.5);
  std::vector<double> one = {7};
  EXPECT_DOUBLE_EQ(lt::percentile_sorted(one, 99), 7);
}

TEST(LoadtestSummary, UnsortedInputAndPopulationStd) {
  lt::Summary s = lt::summarize({4, 2, 8, 6});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.mean, 5);
  EXPECT_DOUBLE_EQ(s.std, std::sqrt(5.0));  // numpy.std([2,4,6,8]) = sqrt(5)
  EXPECT_DOUBLE_EQ(s.min, 2);
  EXPECT_DOUBLE_EQ(s.max, 8);
  EXPECT_DOUBLE_EQ(s.p50, 5);
  EXPECT_NEAR(s.p90, 7.4, 1e-12);  // numpy.percentile([2,4,6,8], 90) = 7.4
  EXPECT_EQ(lt::summarize({}).count, 0);
}

TEST(LoadtestSlo, ParsesAndRejects) {
  lt::Slo slo;
  EXPECT_EQ(lt::parse_slo("ttft:500,tpot:50,e2e:10000", &slo), "");
  EXPECT_EQ(*slo.ttft_ms, 500);
  EXPECT_EQ(*slo.tpot_ms, 50);
  EXPECT_EQ(*slo.e2e_ms, 10000);
  EXPECT_EQ(lt::parse_slo("tpot:20", &slo), "");
  EXPECT_FALSE(slo.ttft_ms.has_value());
  EXPECT_NE(lt::parse_slo("ttft", &slo).find("NAME:MILLISECONDS"), std::string::npos);
  EXPECT_NE(lt::parse_slo("ttft:-1", &slo).find("positive"), std::string::npos);
  EXPECT_NE(lt::parse_slo("ttft:abc", &slo).find("positive"), std::string::npos);
  EXPECT_NE(lt::parse_slo("latency:5", &slo).find("unknown SLO"), std::string::npos);
}

namespace {

// A completed request: issued at start_s, first token after ttft, then n-1 tokens every gap.
lt::RequestRecord done(double start_s, double ttft, double gap, int n, double tail = 0.001) {
  lt::RequestRecord r;
  r.start_s = start_s;
  r.ttfr_s = ttft * 0.5;
  r.ttft_s = ttft;
  for (int i = 0; i < n; ++i) r.token_times_s.push_back(ttft + gap * i);
  r.end_s = r.token_times_s.back() + tail;
  r.usage_completion_tokens = n;
  r.usage_prompt_tokens = 100;
  r.expected_input_tokens = 95;
  return r;
}

lt::RequestRecord failed(double start_s, lt::ErrorKind kind, int status, double end_s) {
  lt::RequestRecord r;
  r.start_s = start_s;
  r.error = kind;
  r.http_status = status;
  r.end_s = end_s;
  return r;
}

}  // namespace

TEST(LoadtestSlo, GoodRequestRules) {
  lt::Slo slo;
  ASSERT_EQ(lt::parse_slo("ttft:100,tpot:20,e2e:1000", &slo), "");
  EXPECT_TRUE(lt::meets_slo(done(0, 0.050, 0.010, 10), slo));
  EXPECT_FALSE(lt::meets_slo(done(0, 0.150, 0.010, 10), slo));          // TTFT over
  EXPECT_FALSE(lt::meets_slo(done(0, 0.050, 0.030, 10), slo));          // TPOT over
  EXPECT_FALSE(lt::meets_slo(done(0, 0.050, 0.019, 60), slo));          // E2E over (1.17 s)
  EXPECT_TRUE(lt::meets_slo(done(0, 0.050, 0.0, 1), slo));              // one token: no TPOT
  EXPECT_FALSE(lt::meets_slo(failed(0, lt::ErrorKind::kTimeout, 0, 1), slo));
  lt::RequestRecord no_token = done(0, 0.05, 0.01, 3);
  no_token.ttft_s.reset();
  EXPECT_FALSE(lt::meets_slo(no_token, slo));  // a TTFT objective needs a first token
}

TEST(LoadtestRecord, TpotUsesUsageCount) {
  lt::RequestRecord r = done(0, 0.1, 0.02, 11);  // 10 gaps of 20 ms
  EXPECT_NEAR(*r.tpot_s(), 0.02, 1e-12);
  EXPECT_NEAR(*r.decode_tokens_per_s(), 50, 1e-9);
  r.usage_completion_tokens = 21;  // two tokens per event: the span holds 20 token gaps
  EXPECT_NEAR(*r.tpot_s(), 0.01, 1e-12);
  r.usage_completion_tokens = -1;  // no usage: events count
  EXPECT_NEAR(*r.tpot_s(), 0.02, 1e-12);
}

TEST(LoadtestLevel, AggregatesOnFixedData) {
  std::vector<lt::RequestRecord> recs;
  recs.push_back(done(0.0, 0.100, 0.010, 11));   // ends at 0.201
  recs.push_back(done(0.5, 0.200, 0.020, 6));    // ends at 0.5 + 0.301 = 0.801
  recs.push_back(failed(0.2, lt::ErrorKind::kHttpStatus, 503, 0.05));
  recs.push_back(failed(0.3, lt::ErrorKind::kTimeout, 0, 1.7));  // ends at 2.0 (the last end)
  lt::RequestRecord third = done(1.0, 0.150, 0.010, 3);          // ends at 1.171
  third.usage_completion_tokens = 4;  // usage disagrees with 3 events
  recs.push_back(third);
  lt::Slo slo;
  ASSERT_EQ(lt::parse_slo("ttft:160", &slo), "");
  lt::LevelStats s = lt::compute_level_stats(recs, slo);
  EXPECT_EQ(s.issued, 5);
  EXPECT_EQ(s.completed, 3);
  EXPECT_EQ(s.failed, 2);
  EXPECT_EQ(s.errors.at("http_503"), 1);
  EXPECT_EQ(s.errors.at("timeout"), 1);
  EXPECT_DOUBLE_EQ(s.duration_s, 2.0);
  EXPECT_DOUBLE_EQ(s.request_per_s, 1.5);
  EXPECT_EQ(s.good, 2);  // TTFT 100 and 150 ms pass, 200 ms fails
  EXPECT_DOUBLE_EQ(s.goodput_req_per_s, 1.0);
  EXPECT_EQ(s.output_tokens, 11 + 6 + 4);
  EXPECT_EQ(s.chunk_tokens, 11 + 6 + 3);
  EXPECT_EQ(s.usage_mismatches, 1);
  EXPECT_EQ(s.input_tokens, 300);  // usage prompt tokens win over the workload's 95
  EXPECT_DOUBLE_EQ(s.output_tok_per_s, 21 / 2.0);
  // ITL pools every gap: 10 x 10 ms, 5 x 20 ms, 2 x 10 ms.
  EXPECT_EQ(s.itl_s.count, 17);
  EXPECT_NEAR(s.itl_s.mean, (12 * 0.010 + 5 * 0.020) / 17, 1e-12);
  EXPECT_NEAR(s.itl_s.p50, 0.010, 1e-12);
  // TPOT per request: 10 ms, 20 ms, and 20 ms / 3 (usage says 4 tokens over a 20 ms span).
  EXPECT_EQ(s.tpot_s.count, 3);
  EXPECT_NEAR(s.tpot_s.mean, (0.010 + 0.020 + 0.020 / 3) / 3, 1e-12);
  EXPECT_NEAR(s.output_tok_per_s_per_user, (100 + 50 + 150) / 3.0, 1e-9);
  // llama-benchy total: (10 + 5 + 3) tokens after the first / (1.170 - 0.100).
  EXPECT_NEAR(s.decode_tok_per_s, 18 / 1.070, 1e-9);
  EXPECT_NEAR(s.ttft_s.mean, 0.150, 1e-12);
  EXPECT_NEAR(s.e2e_s.max, 0.301, 1e-12);
  // Intervals: [0,0.201) [0.2,0.25) [0.3,2.0) [0.5,0.801) [1.0,1.171) -> at most 2 at once.
  EXPECT_EQ(s.peak_concurrency, 2);
}

TEST(LoadtestLevel, PeakConcurrencyTouchingIntervalsDoNotOverlap) {
  // Exact binary fractions: the first ends at 1.0, exactly when the second starts.
  std::vector<lt::RequestRecord> recs = {done(0, 0.25, 0.25, 3, 0.25), done(1.0, 0.25, 0.25, 3, 0.25)};
  EXPECT_DOUBLE_EQ(recs[0].end_s, 1.0);
  EXPECT_EQ(lt::compute_level_stats(recs, lt::Slo{}).peak_concurrency, 1);
  EXPECT_EQ(lt::compute_level_stats({}, lt::Slo{}).issued, 0);
}

TEST(LoadtestLevel, WithoutSloEveryCompletedRequestIsGood) {
  std::vector<lt::RequestRecord> recs = {done(0, 5.0, 1.0, 3), failed(0, lt::ErrorKind::kDisconnect, 0, 1)};
  lt::LevelStats s = lt::compute_level_stats(recs, lt::Slo{});
  EXPECT_EQ(s.good, 1);
  EXPECT_DOUBLE_EQ(s.goodput_req_per_s, s.request_per_s);
  EXPECT_EQ(s.errors.at("disconnect"), 1);
}
