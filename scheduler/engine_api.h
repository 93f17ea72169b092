// The engine's public API for its clients (http/, ds4serve-bench, tests): the plain request a client
// submits (token ids and limits, never JSON), the per-request output stream it reads (tokens as they
// are sampled, optional logprobs, the finish reason, usage and timing), and the engine statistics
// metrics/ exports. A RequestStream is written by the engine thread only and read by any thread; the
// engine never blocks on it (a reader that falls behind by more than the capacity loses its request).
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "engine/sampler.h"

namespace ds4 {

using RequestId = uint64_t;
using EngineClock = std::chrono::steady_clock;

// Most alternatives a request may ask for per sampled token (OpenAI allows 20).
constexpr int kMaxTopLogprobs = 20;

struct GenerationRequest {
  std::vector<int32_t> prompt_tokens;   // the rendered, tokenized prompt (BOS included); non-empty
  SamplingParams sampling;              // temperature <= 0: greedy; the seed drives a counter-based RNG
  int64_t max_tokens = 256;             // most completion tokens, >= 1
  std::vector<int32_t> stop_token_ids;  // sampling one finishes the request (reason kStop)
  bool ignore_eos = false;              // when false, sampling the model's EOS finishes (reason kStop)
  int priority = 0;                     // larger is admitted first and preempted last
  bool logprobs = false;                // report each sampled token's log-probability
  int top_logprobs = 0;                 // 0..kMaxTopLogprobs most likely alternatives per token
  EngineClock::time_point arrival_time{};  // default (epoch): set to the time of submit()
  bool speculative = true;              // false: never draft for this request (opt-out of MTP speculation)
};

enum class FinishReason : uint8_t { kNone, kStop, kLength, kAbort, kError };
constexpr int kNumFinishReasons = 5;
// "", "stop", "length", "abort", "error" (the OpenAI names for the first three).
const char* finish_reason_name(FinishReason reason);

// Log-probabilities are of the model's raw distribution (softmax of the logits, before temperature
// and the top-k / top-p / min-p filters), as OpenAI and vLLM report them.
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};
struct SampledLogprobs {
  float logprob = 0.0f;           // of the sampled token
  std::vector<TokenLogprob> top;  // top_logprobs alternatives, most likely first
};

struct RequestUsage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // prompt tokens served by the prefix cache at first admission
  int32_t preemptions = 0;           // times the request gave up its KV and was recomputed
};

// Steady-clock stamps; a default (epoch) value means "not yet".
struct RequestTiming {
  EngineClock::time_point queued{};           // arrival (submit or the given arrival_time)
  EngineClock::time_point first_scheduled{};  // first step that computed any of its tokens
  EngineClock::time_point first_token{};      // first sampled token
  EngineClock::time_point finished{};
};

// What a reader takes out of a stream in one poll: everything published since the previous poll.
struct StreamChunk {
  std::vector<int32_t> tokens;            // newly sampled token ids, in order
  std::vector<SampledLogprobs> logprobs;  // parallel to tokens when the request asked for logprobs
  FinishReason finish_reason = FinishReason::kNone;  // set on the last chunk only
  int32_t stop_token = -1;                // kStop: the EOS / stop id that ended it (also in tokens)
  std::string error;                      // kError: what went wrong
  RequestUsage usage;                     // as of this chunk (final when finished)
  RequestTiming timing;                   // as of this chunk
  bool finished() const { return finish_reason != FinishReason::kNone; }
};

// One request's output. The engine thread appends; readers poll or wait. The optional notify
// callback runs on the engine thread when output becomes available and no earlier notification is
// still unconsumed (edge-triggered: poll() re-arms it), so an Asio reader can post a handler to its
// executor and poll there without ever blocking an io thread. It must be cheap and must not block.
class RequestStream {
 public:
  using Notify = std::function<void()>;
  RequestStream(RequestId id, size_t capacity_tokens, Notify notify = {});
  RequestStream(const RequestStream&) = delete;
  RequestStream& operator=(const RequestStream&) = delete;

  RequestId id() const { return id_; }

  // Reader side (any thread). Moves everything pending into `out` (replacing its contents); false
  // when nothing is new (then `out` is untouched). Once the final chunk is taken, polls return false.
  bool poll(StreamChunk& out);
  // Blocks until something is new or the timeout passes; same result as poll().
  bool wait_for(StreamChunk& out, std::chrono::milliseconds timeout);
  // True once the engine has published the final chunk (it may not be read yet).
  bool finished() const;

  // Writer side (engine thread only). Appends one token; false when the pending buffer is over
  // capacity (the engine then ends the request with kError instead of blocking).
  bool push(int32_t token, SampledLogprobs* logprobs, const RequestUsage& usage, const RequestTiming& timing);
  // Publishes the final chunk. Later pushes and finishes are ignored.
  void finish(FinishReason reason, int32_t stop_token, std::string error, const RequestUsage& usage,
              const RequestTiming& timing);

 private:
  void notify_locked(std::unique_lock<std::mutex>& lock);

  const RequestId id_;
  const size_t capacity_tokens_;
  const Notify notify_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  StreamChunk pending_;
  bool has_news_ = false;       // pending_ holds something not yet polled
  bool notified_ = false;       // a notification is outstanding (cleared by poll)
  bool final_published_ = false;
  bool final_taken_ = false;
};

// Occupancy of the KV pool, in blocks of block_tokens positions.
struct KvUsage {
  int64_t block_tokens = 0;
  int64_t total_blocks = 0;
  int64_t used_blocks = 0;    // held by running sequences
  int64_t cached_blocks = 0;  // free but holding a reusable prefix (evictable)
  double used_fraction() const { return total_blocks > 0 ? double(used_blocks) / double(total_blocks) : 0.0; }
};

// One engine step, recorded after it ran.
struct StepStats {
  uint64_t step = 0;
  int num_seqs = 0;             // sequences in the forward batch
  int64_t num_tokens = 0;       // tokens computed (prefill + decode + verified drafts)
  int64_t prefill_tokens = 0;   // prompt tokens and recomputed tokens
  int64_t decode_tokens = 0;    // one per sequence that fed its last sampled token
  int num_sampled = 0;          // tokens sampled this step
  int num_preempted = 0;        // sequences preempted while planning this step
  int num_finished = 0;         // requests finished this step (any reason)
  int num_running = 0;          // admitted sequences after planning
  int num_waiting = 0;          // queued sequences after planning
  double schedule_us = 0, forward_us = 0, sample_us = 0, step_us = 0;
  int64_t unique_experts = 0;     // routed experts the forward pass read, summed over layers
  int64_t weight_bytes_read = 0;  // weight bytes the forward pass read (0: backend does not report)
  StepLaunch launch = StepLaunch::kDirect;  // how the forward pass's kernels ran (engine/forward.h)
  KvUsage kv;                   // after the step
  // Speculative decoding (scheduler/speculator.h); all zero when it is off.
  int spec_draft_len = 0;               // drafts per sequence the policy chose for this step (K)
  int spec_drafts = 0;                  // sequences that verified drafts
  int64_t spec_draft_tokens = 0;        // draft tokens verified (they are in num_tokens too)
  int64_t spec_accepted_tokens = 0;     // of which accepted
  std::vector<int64_t> spec_accepted_per_position;  // [max draft]: drafts accepted at position j
  double draft_us = 0;                  // drafting (MTP) time, inside step_us
};

// Cumulative counters and current gauges (a consistent snapshot).
struct EngineStats {
  uint64_t steps = 0;
  uint64_t requests_submitted = 0;
  uint64_t requests_rejected = 0;                       // refused by validation or a full queue
  uint64_t requests_finished[kNumFinishReasons] = {};   // indexed by FinishReason
  uint64_t prompt_tokens_computed = 0;                  // prefill work, recomputation included
  uint64_t generation_tokens = 0;
  uint64_t preemptions = 0;
  uint64_t prefix_cache_queried_tokens = 0;             // tokens looked up at admissions (re-admissions too)
  uint64_t prefix_cache_hit_tokens = 0;
  uint64_t spec_drafts = 0;             // sequence steps that verified drafts
  uint64_t spec_draft_tokens = 0;
  uint64_t spec_accepted_tokens = 0;
  std::vector<uint64_t> spec_accepted_per_position;  // [max draft]
  int num_running = 0;
  int num_waiting = 0;
  KvUsage kv;
  StepStats last_step;
};

}  // namespace ds4
