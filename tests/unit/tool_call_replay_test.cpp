// Tool-call replay LRU: exact lookup by id list, recency, entry and byte bounds, concurrency.
#include "engine/tool_call_replay.h"

#include <gtest/gtest.h>

#include <thread>

namespace ds4 {
namespace {

TEST(ToolCallReplay, LookupNeedsTheSameIdsInOrder) {
  ToolCallReplay r(16);
  r.remember({"a", "b"}, "DSML-ab");
  EXPECT_EQ(r.lookup({"a", "b"}), "DSML-ab");
  EXPECT_FALSE(r.lookup({"b", "a"}).has_value());
  EXPECT_FALSE(r.lookup({"a"}).has_value());
  EXPECT_FALSE(r.lookup({}).has_value());
  r.remember({"a", "b"}, "DSML-ab2");  // replaced, not duplicated
  EXPECT_EQ(r.lookup({"a", "b"}), "DSML-ab2");
  EXPECT_EQ(r.size(), 1u);
  r.remember({}, "x");
  r.remember({"", "c"}, "x");
  EXPECT_EQ(r.size(), 1u);
}

TEST(ToolCallReplay, EvictsLeastRecentlyUsed) {
  ToolCallReplay r(2);
  r.remember({"1"}, "one");
  r.remember({"2"}, "two");
  EXPECT_TRUE(r.lookup({"1"}).has_value());  // 1 is now the most recent
  r.remember({"3"}, "three");
  EXPECT_TRUE(r.lookup({"1"}).has_value());
  EXPECT_FALSE(r.lookup({"2"}).has_value());
  EXPECT_TRUE(r.lookup({"3"}).has_value());
}

TEST(ToolCallReplay, BoundedByBytes) {
  ToolCallReplay r(100, 10);
  r.remember({"a"}, "123456");
  r.remember({"b"}, "123456");
  EXPECT_FALSE(r.lookup({"a"}).has_value());
  EXPECT_TRUE(r.lookup({"b"}).has_value());
  EXPECT_LE(r.bytes(), 10u);
  r.remember({"c"}, std::string(11, 'x'));  // larger than the whole budget: not kept
  EXPECT_FALSE(r.lookup({"c"}).has_value());
  EXPECT_TRUE(r.lookup({"b"}).has_value());
}

TEST(ToolCallReplay, ConcurrentUse) {
  ToolCallReplay r(64);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&r, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::string id = std::to_string(t) + "_" + std::to_string(i % 100);
        r.remember({id}, "v" + id);
        const auto got = r.lookup({id});
        if (got) {
          EXPECT_EQ(*got, "v" + id);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(r.size(), 64u);
}

}  // namespace
}  // namespace ds4
