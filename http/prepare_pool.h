// PreparePool: the small bounded thread pool that takes the CPU-heavy preparation of requests
// (JSON parsing, chat rendering and tokenization of the generation routes, /tokenize,
// /detokenize, /v1/messages/count_tokens) off the io threads, so that one huge prompt cannot stall
// /health, /metrics or the other connections that share its io thread. run() executes a job on a
// pool thread and resumes the calling coroutine on its own executor (the connection's strand). It
// refuses -- nullopt, the job not run -- while `threads + max_queued` jobs are outstanding; the
// routes answer that with overloaded_error() (503 server_overloaded, Retry-After: 1), as the
// engine's --max-waiting bound does. join() waits for every outstanding job; HttpServer::stop
// calls it after stopping the io threads and before the io_context or the model service go away
// (a job refers to its connection's request and to the model's tokenizer). Sized by
// --prepare-threads and --max-prepare-queue (hardening_options.h). Thread-safe.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <optional>
#include <type_traits>

#include "http/api_error.h"

namespace ds4::http {

class PreparePool {
 public:
  // threads >= 1; max_queued >= 0 jobs may wait for a free thread.
  PreparePool(int threads, int max_queued);
  ~PreparePool();  // join()
  PreparePool(const PreparePool&) = delete;
  PreparePool& operator=(const PreparePool&) = delete;

  // Runs job() on a pool thread; the caller resumes on its own executor with the result (an
  // exception thrown by the job is rethrown there). nullopt when the pool is full.
  template <class Job>
  boost::asio::awaitable<std::optional<std::invoke_result_t<Job&>>> run(Job job) {
    using Result = std::invoke_result_t<Job&>;
    if (!try_reserve()) co_return std::nullopt;
    auto on_pool = [this, job = std::move(job)]() mutable -> boost::asio::awaitable<Result> {
      const Reservation done(*this);
      co_return job();
    };
    co_return co_await boost::asio::co_spawn(pool_.get_executor(), std::move(on_pool), boost::asio::use_awaitable);
  }

  // Waits until no job is outstanding and the threads have ended; run() must not be called after.
  void join();
  // Jobs accepted by run() and not yet finished (running or waiting).
  int outstanding() const { return outstanding_.load(); }
  int capacity() const { return capacity_; }
  // The refusal of a request that found the pool full.
  ApiError overloaded_error() const;

 private:
  // Releases one reserved place when the job ends (also when it throws).
  struct Reservation {
    explicit Reservation(PreparePool& p) : pool(p) {}
    ~Reservation() { pool.outstanding_.fetch_sub(1); }
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    PreparePool& pool;
  };
  bool try_reserve();

  boost::asio::thread_pool pool_;
  const int capacity_;
  std::atomic<int> outstanding_{0};
};

}  // namespace ds4::http
