// Unit tests of the Prometheus text reader and the before/after difference: labels with quoted
// braces, spaces and escapes, special values, timestamps, TYPE-driven counters vs gauges, histogram
// means, series new in the second scrape, and a clear error for a malformed line.
#include <gtest/gtest.h>

#include <cmath>

#include "loadtest/metrics_scrape.h"

namespace lt = ds4::loadtest;

TEST(LoadtestMetrics, ParsesSamples) {
  lt::MetricsScrape m;
  ASSERT_EQ(lt::parse_prometheus_text(
                "# HELP x_total help text\n# TYPE x_total counter\n"
                "x_total{a=\"b}c d\",e=\"q\\\"x\"} 3 1700000000000\n"
                "up 1\n"
                "weird{l=\"v\"} +Inf\n"
                "nan_metric NaN\n\n",
                &m),
            "");
  ASSERT_EQ(m.samples.size(), 4u);
  EXPECT_EQ(m.samples[0].name, "x_total");
  EXPECT_EQ(m.samples[0].labels, "{a=\"b}c d\",e=\"q\\\"x\"}");
  EXPECT_EQ(m.samples[0].value, 3);
  EXPECT_EQ(m.samples[1].key(), "up");
  EXPECT_TRUE(std::isinf(m.samples[2].value));
  EXPECT_TRUE(std::isnan(m.samples[3].value));
  EXPECT_EQ(m.types.at("x_total"), "counter");
  std::string err = lt::parse_prometheus_text("ok 1\nbroken{a=\"1\" 2\n", &m);
  EXPECT_NE(err.find("line 2"), std::string::npos);
  EXPECT_NE(lt::parse_prometheus_text("novalue\n", &m), "");
  EXPECT_NE(lt::parse_prometheus_text("x 1abc\n", &m), "");
}

TEST(LoadtestMetrics, DiffCountersGaugesHistograms) {
  lt::MetricsScrape before, after;
  ASSERT_EQ(lt::parse_prometheus_text(
                "# TYPE ds4serve_preemptions counter\nds4serve_preemptions_total 2\n"
                "# TYPE kv_usage gauge\nkv_usage{pool=\"main\"} 0.25\n"
                "untyped_total 10\n"
                "# TYPE ttft_seconds histogram\n"
                "ttft_seconds_bucket{le=\"0.1\"} 1\nttft_seconds_bucket{le=\"+Inf\"} 2\n"
                "ttft_seconds_sum 0.3\nttft_seconds_count 2\n",
                &before),
            "");
  ASSERT_EQ(lt::parse_prometheus_text(
                "# TYPE ds4serve_preemptions counter\nds4serve_preemptions_total 5\n"
                "# TYPE kv_usage gauge\nkv_usage{pool=\"main\"} 0.75\n"
                "untyped_total 16\nnew_total 4\n"
                "# TYPE ttft_seconds histogram\n"
                "ttft_seconds_bucket{le=\"0.1\"} 3\nttft_seconds_bucket{le=\"+Inf\"} 6\n"
                "ttft_seconds_sum 1.1\nttft_seconds_count 6\n",
                &after),
            "");
  lt::MetricsDiff d = lt::diff_metrics(before, after);
  EXPECT_DOUBLE_EQ(d.counter_deltas.at("ds4serve_preemptions_total"), 3);
  EXPECT_DOUBLE_EQ(d.counter_deltas.at("untyped_total"), 6);
  EXPECT_DOUBLE_EQ(d.counter_deltas.at("new_total"), 4);
  EXPECT_DOUBLE_EQ(d.gauges.at("kv_usage{pool=\"main\"}").first, 0.25);
  EXPECT_DOUBLE_EQ(d.gauges.at("kv_usage{pool=\"main\"}").second, 0.75);
  EXPECT_NEAR(d.histogram_means.at("ttft_seconds"), 0.8 / 4, 1e-12);
  EXPECT_EQ(d.counter_deltas.count("ttft_seconds_bucket{le=\"0.1\"}"), 0u);
  EXPECT_EQ(d.gauges.count("ttft_seconds_sum"), 0u);
}
