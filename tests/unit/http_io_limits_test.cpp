// The io-side limits of the server: the request-preparation pool (http/prepare_pool.h) runs jobs
// off the caller's thread and resumes the caller on its strand, refuses beyond threads + queue
// with a 503 server_overloaded error, frees its places when jobs end or throw; the per-address
// connection counter (http/address_limit.h) refuses over its limit per address only, counts an
// IPv4-mapped IPv6 address as IPv4 and forgets addresses without connections; the flags parse
// with their documented defaults.
#include <gtest/gtest.h>

#include <boost/asio.hpp>

#include <future>
#include <stdexcept>
#include <thread>

#include "engine/load_error.h"
#include "http/address_limit.h"
#include "http/prepare_pool.h"
#include "http/server_options.h"

namespace ds4::http {
namespace {

namespace net = boost::asio;
using Strand = net::strand<net::io_context::executor_type>;

// An io_context run by one thread, as the server's io threads run theirs.
struct IoThread {
  net::io_context ioc;
  net::executor_work_guard<net::io_context::executor_type> work{ioc.get_executor()};
  std::thread thread{[this] { ioc.run(); }};
  ~IoThread() {
    work.reset();
    thread.join();
  }
};

struct Outcome {
  std::optional<int> value;
  bool on_strand = false;
  bool job_on_other_thread = false;
};

// Runs `job` through the pool from a coroutine on `strand`; the future completes when it resumed.
std::future<Outcome> run_on_strand(PreparePool& pool, Strand strand, std::function<int()> job) {
  auto promise = std::make_shared<std::promise<Outcome>>();
  auto result = promise->get_future();
  net::co_spawn(
      strand,
      [&pool, strand, job, promise]() -> net::awaitable<void> {
        const auto caller = std::this_thread::get_id();
        std::thread::id worker;
        Outcome o;
        o.value = co_await pool.run([&] {
          worker = std::this_thread::get_id();
          return job();
        });
        o.on_strand = strand.running_in_this_thread();
        o.job_on_other_thread = o.value && worker != caller;
        promise->set_value(o);
      },
      [promise](std::exception_ptr e) {
        if (e) promise->set_exception(e);
      });
  return result;
}

TEST(PreparePool, RunsTheJobOnAPoolThreadAndResumesOnTheCallersStrand) {
  PreparePool pool(2, 4);
  IoThread io;
  const Outcome o = run_on_strand(pool, net::make_strand(io.ioc), [] { return 42; }).get();
  ASSERT_TRUE(o.value);
  EXPECT_EQ(*o.value, 42);
  EXPECT_TRUE(o.on_strand);
  EXPECT_TRUE(o.job_on_other_thread);
  EXPECT_EQ(pool.outstanding(), 0);
}

TEST(PreparePool, RefusesBeyondThreadsPlusQueueAndFreesPlacesAsJobsEnd) {
  PreparePool pool(1, 1);
  ASSERT_EQ(pool.capacity(), 2);
  IoThread io;
  std::promise<void> gate;
  std::shared_future<void> open = gate.get_future().share();
  auto blocked = [open] {
    open.wait();
    return 1;
  };
  auto running = run_on_strand(pool, net::make_strand(io.ioc), blocked);  // holds the thread
  auto queued = run_on_strand(pool, net::make_strand(io.ioc), blocked);   // waits for it
  while (pool.outstanding() < 2) std::this_thread::yield();
  const Outcome refused = run_on_strand(pool, net::make_strand(io.ioc), [] { return 3; }).get();
  EXPECT_FALSE(refused.value);
  EXPECT_TRUE(refused.on_strand);
  gate.set_value();
  EXPECT_EQ(running.get().value, 1);
  EXPECT_EQ(queued.get().value, 1);
  EXPECT_EQ(pool.outstanding(), 0);
  EXPECT_EQ(run_on_strand(pool, net::make_strand(io.ioc), [] { return 4; }).get().value, 4);
}

TEST(PreparePool, AJobThatThrowsRethrowsInTheCallerAndFreesItsPlace) {
  PreparePool pool(1, 0);
  IoThread io;
  auto failed = run_on_strand(pool, net::make_strand(io.ioc), []() -> int { throw std::runtime_error("bad"); });
  EXPECT_THROW(failed.get(), std::runtime_error);
  EXPECT_EQ(pool.outstanding(), 0);
  EXPECT_EQ(run_on_strand(pool, net::make_strand(io.ioc), [] { return 5; }).get().value, 5);
}

TEST(PreparePool, OverloadedErrorIs503ServerOverloadedWithRetryAfter) {
  const ApiError e = PreparePool(1, 3).overloaded_error();
  EXPECT_EQ(e.status, 503);
  EXPECT_EQ(e.code, "server_overloaded");
  EXPECT_EQ(e.retry_after_seconds, 1);
  EXPECT_NE(e.message.find("4 requests"), std::string::npos) << e.message;
}

TEST(ConnectionsPerAddress, RefusesOverTheLimitPerAddressOnly) {
  ConnectionsPerAddress c(2);
  const auto a = net::ip::make_address("10.0.0.1"), b = net::ip::make_address("10.0.0.2");
  EXPECT_TRUE(c.try_open(a));
  EXPECT_TRUE(c.try_open(a));
  EXPECT_FALSE(c.try_open(a));
  EXPECT_EQ(c.open_from(a), 2);
  EXPECT_TRUE(c.try_open(b));
  c.close(a);
  EXPECT_TRUE(c.try_open(a));
  EXPECT_FALSE(c.try_open(a));
  c.close(a), c.close(a), c.close(b);
  EXPECT_EQ(c.addresses(), 0u);  // forgotten at zero: the table stays bounded
  c.close(b);                    // an unknown address is ignored
  EXPECT_EQ(c.open_from(b), 0);
}

TEST(ConnectionsPerAddress, AnIpv4MappedAddressCountsAsIpv4) {
  ConnectionsPerAddress c(1);
  EXPECT_TRUE(c.try_open(net::ip::make_address("192.0.2.7")));
  EXPECT_FALSE(c.try_open(net::ip::make_address("::ffff:192.0.2.7")));
  EXPECT_TRUE(c.try_open(net::ip::make_address("2001:db8::7")));
  c.close(net::ip::make_address("::ffff:192.0.2.7"));
  EXPECT_EQ(c.open_from(net::ip::make_address("192.0.2.7")), 0);
}

TEST(ConnectionsPerAddress, ZeroMeansNoLimit) {
  ConnectionsPerAddress c(0);
  const auto a = net::ip::make_address("127.0.0.1");
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(c.try_open(a));
  EXPECT_EQ(c.addresses(), 0u);
}

TEST(IoLimitFlags, DefaultsAndParsing) {
  bool help = false;
  const ServerOptions d = parse_server_options({}, "m.gguf", help);
  EXPECT_EQ(d.hardening.max_connections_per_address, 0);
  EXPECT_EQ(d.hardening.prepare_threads, 2);
  EXPECT_EQ(d.hardening.max_prepare_queue, 256);
  const ServerOptions o = parse_server_options(
      {"--max-connections-per-ip", "3", "--prepare-threads", "4", "--max-prepare-queue=0"}, "m.gguf", help);
  EXPECT_EQ(o.hardening.max_connections_per_address, 3);
  EXPECT_EQ(o.hardening.prepare_threads, 4);
  EXPECT_EQ(o.hardening.max_prepare_queue, 0);
  for (const auto& [flag, value] : {std::pair{"--max-connections-per-ip", "-1"}, {"--prepare-threads", "0"},
                                    {"--max-prepare-queue", "x"}, {"--prepare-threads", "257"}}) {
    try {
      parse_server_options({flag, value}, "m.gguf", help);
      ADD_FAILURE() << flag << " " << value << " accepted";
    } catch (const LoadError& e) {
      EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
    }
  }
  try {
    parse_server_options({"--max-connections-per-ip"}, "m.gguf", help);
    ADD_FAILURE() << "a flag without its value was accepted";
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find("needs a value"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ds4::http
