// Engine: the one thread that owns all inference state (scheduler, KV pool, backend). Other threads
// submit requests and aborts through a locked inbox and read per-request RequestStreams; the loop is
// drain inbox -> schedule -> (draft) -> build the ragged batch -> forward -> sample (or verify
// drafts) -> update -> publish -> record stats. Created by the server's main (or the bench / tests) with a backend and a pool that
// it then uses from its own thread only, until stop().
#pragma once
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/forward.h"
#include "scheduler/engine_api.h"
#include "scheduler/kv_pool.h"
#include "scheduler/scheduler.h"
#include "scheduler/speculator.h"

namespace ds4 {

struct EngineConfig {
  SchedulerConfig scheduler;             // max_model_len 0: min(context_length, pool limit)
  int64_t context_length = 0;            // the model's context length (positions), > 0
  int32_t eos_token_id = -1;             // the model's end-of-sequence token (-1: none)
  int32_t n_vocab = 0;                   // token ids must be in [0, n_vocab)
  size_t stream_capacity_tokens = 8192;  // unread tokens a stream may hold before its request fails
  size_t max_queued_requests = 4096;     // submits beyond this many unfinished requests are refused
};

class Engine {
 public:
  using StepObserver = std::function<void(const StepStats&)>;

  // backend and kv (and speculator, when given: speculative decoding) must outlive the engine; after
  // start() only the engine thread touches them.
  Engine(Backend& backend, KvPool& kv, EngineConfig config, Speculator* speculator = nullptr);
  ~Engine();  // stop()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Called on the engine thread after every step (metrics/). Set before start().
  void set_step_observer(StepObserver observer) { observer_ = std::move(observer); }
  void start();
  // Ends the loop after the current step; unfinished requests finish with kAbort. Idempotent.
  void stop();

  // Thread-safe. Why the request cannot be served ("" when it can): empty prompt, token id out of
  // range, prompt too long for the context or the pool, bad limits or sampling parameters.
  std::string check_request(const GenerationRequest& request) const;
  // Thread-safe. Queues the request; the returned stream carries its output. A request that fails
  // check_request(), or arrives when the queue is full or the engine stopped, gets a stream that is
  // already finished with kError and the reason (its notify is never called: check finished()).
  std::shared_ptr<RequestStream> submit(GenerationRequest request, RequestStream::Notify notify = {});
  // Thread-safe. Cancels a request (client gone, timeout, or a stop string the text side matched,
  // which then reports its own finish reason): it finishes with kAbort at the next step and its KV
  // blocks are freed. Unknown or finished ids are ignored.
  void abort(RequestId id);

  // Thread-safe snapshot.
  EngineStats stats() const;
  // Non-empty once the backend failed: the engine thread has ended, every request finished with
  // kError and this message, and submit() refuses new work.
  std::string fatal_error() const;
  // The limit actually applied to prompt + output positions of one request.
  int64_t max_model_len() const { return config_.scheduler.max_model_len; }

 private:
  struct InboxItem {
    std::unique_ptr<Sequence> submit;  // null: an abort
    RequestId abort_id = 0;
  };

  void run_loop();
  bool drain_inbox(bool wait_for_work);  // false when stopping
  void step();
  void publish(std::vector<SequenceUpdate>& updates, StepStats& stats);
  void finish_removed(std::unique_ptr<Sequence> seq, FinishReason reason, const std::string& error,
                      int32_t stop_token = -1);
  void record(const StepStats& step);
  void refresh_gauges();  // running / waiting / KV usage in stats_ without a step
  static void record_speculation(const SpecStepStats& spec, StepStats& st);
  std::shared_ptr<RequestStream> rejected(RequestId id, const std::string& why);

  Backend& backend_;
  KvPool& kv_;
  Speculator* speculator_;
  EngineConfig config_;
  Scheduler scheduler_;
  StepObserver observer_;
  std::thread thread_;

  mutable std::mutex inbox_mutex_;
  std::condition_variable inbox_cv_;
  std::vector<InboxItem> inbox_;
  bool stopping_ = false;
  std::string fatal_error_;  // guarded by stats_mutex_; set when the backend failed
  bool started_ = false;
  std::atomic<RequestId> next_id_{1};
  std::atomic<size_t> unfinished_{0};  // submitted and not yet finished

  mutable std::mutex stats_mutex_;
  EngineStats stats_;
};

}  // namespace ds4
