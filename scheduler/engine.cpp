// Engine implementation (see engine.h): the inbox, the loop, and publication of results. Only
// run_loop() and what it calls touch the scheduler, the pool and the backend.
#include "scheduler/engine.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "scheduler/step.h"

namespace ds4 {
namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "%s:%d: Engine: %s\n", __FILE__, __LINE__, what);
  std::abort();
}

double micros(EngineClock::time_point a, EngineClock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

// Resolves max_model_len against the model and the pool; throws at start-up on a bad config.
EngineConfig resolve(EngineConfig c, const KvPool& kv) {
  if (c.context_length < 2) throw std::invalid_argument("EngineConfig: context_length must be >= 2");
  if (c.n_vocab < 1) throw std::invalid_argument("EngineConfig: n_vocab must be >= 1");
  if (c.stream_capacity_tokens < 1) throw std::invalid_argument("EngineConfig: stream_capacity_tokens must be >= 1");
  int64_t limit = std::min(c.context_length, kv.max_sequence_tokens());
  if (c.scheduler.max_model_len > 0) limit = std::min(limit, c.scheduler.max_model_len);
  c.scheduler.max_model_len = limit;
  if (const std::string p = scheduler_config_problem(c.scheduler); !p.empty())
    throw std::invalid_argument("EngineConfig: " + p);
  return c;
}

std::string sampling_problem(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0.0f) return "temperature must be a finite number >= 0";
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return "top_p must be in (0, 1]";
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) return "min_p must be in [0, 1]";
  if (p.top_k < 0) return "top_k must be >= 0";
  return "";
}

}  // namespace

Engine::Engine(Backend& backend, KvPool& kv, EngineConfig config, Speculator* speculator)
    : backend_(backend),
      kv_(kv),
      speculator_(speculator),
      config_(resolve(std::move(config), kv)),
      scheduler_(config_.scheduler, kv, config_.eos_token_id) {}

Engine::~Engine() { stop(); }

void Engine::start() {
  std::lock_guard lock(inbox_mutex_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] { run_loop(); });
}

void Engine::stop() {
  {
    std::lock_guard lock(inbox_mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  inbox_cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
    return;
  }
  // Never started: nothing else touches the state; finish what was queued.
  std::vector<InboxItem> items;
  {
    std::lock_guard lock(inbox_mutex_);
    items.swap(inbox_);
  }
  for (InboxItem& item : items)
    if (item.submit) finish_removed(std::move(item.submit), FinishReason::kAbort, "engine stopped");
}

std::string Engine::check_request(const GenerationRequest& r) const {
  const int64_t n = static_cast<int64_t>(r.prompt_tokens.size());
  if (n == 0) return "the prompt is empty";
  for (int64_t i = 0; i < n; ++i)
    if (r.prompt_tokens[i] < 0 || r.prompt_tokens[i] >= config_.n_vocab)
      return "prompt token " + std::to_string(i) + " (id " + std::to_string(r.prompt_tokens[i]) +
             ") is outside the vocabulary [0, " + std::to_string(config_.n_vocab) + ")";
  if (n >= max_model_len())
    return "the prompt has " + std::to_string(n) + " tokens; at most " + std::to_string(max_model_len() - 1) +
           " fit (context limit " + std::to_string(max_model_len()) + " tokens including the output)";
  if (r.max_tokens < 1) return "max_tokens must be >= 1";
  for (int32_t t : r.stop_token_ids)
    if (t < 0 || t >= config_.n_vocab) return "stop token id " + std::to_string(t) + " is outside the vocabulary";
  if (r.top_logprobs < 0 || r.top_logprobs > kMaxTopLogprobs)
    return "top_logprobs must be in [0, " + std::to_string(kMaxTopLogprobs) + "]";
  return sampling_problem(r.sampling);
}

// A stream finished with kError before submit() returns (no notification: the caller checks).
std::shared_ptr<RequestStream> Engine::rejected(RequestId id, const std::string& why) {
  auto stream = std::make_shared<RequestStream>(id, 1);
  RequestTiming timing;
  timing.queued = timing.finished = EngineClock::now();
  stream->finish(FinishReason::kError, -1, why, RequestUsage{}, timing);
  std::lock_guard lock(stats_mutex_);
  stats_.requests_rejected += 1;
  return stream;
}

std::shared_ptr<RequestStream> Engine::submit(GenerationRequest request, RequestStream::Notify notify) {
  const RequestId id = next_id_.fetch_add(1);
  if (const std::string why = check_request(request); !why.empty()) return rejected(id, why);
  auto seq = std::make_unique<Sequence>();
  seq->id = id;
  seq->tokens = std::move(request.prompt_tokens);
  seq->request = std::move(request);
  seq->timing.queued =
      seq->request.arrival_time == EngineClock::time_point{} ? EngineClock::now() : seq->request.arrival_time;
  seq->stream = std::make_shared<RequestStream>(id, config_.stream_capacity_tokens, std::move(notify));
  std::shared_ptr<RequestStream> stream = seq->stream;
  std::string refused;
  {
    std::lock_guard lock(inbox_mutex_);
    if (stopping_) {
      refused = fatal_error().empty() ? "the engine is shutting down" : fatal_error();
    } else if (unfinished_.load() >= config_.max_queued_requests) {
      refused = "too many requests in flight (at most " + std::to_string(config_.max_queued_requests) + ")";
    } else {
      unfinished_ += 1;
      inbox_.push_back(InboxItem{std::move(seq), 0});
    }
  }
  if (!refused.empty()) return rejected(id, refused);
  inbox_cv_.notify_one();
  std::lock_guard lock(stats_mutex_);
  stats_.requests_submitted += 1;
  return stream;
}

void Engine::abort(RequestId id) {
  {
    std::lock_guard lock(inbox_mutex_);
    inbox_.push_back(InboxItem{nullptr, id});
  }
  inbox_cv_.notify_one();
}

EngineStats Engine::stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
}

void Engine::run_loop() {
  FinishReason reason = FinishReason::kAbort;
  std::string message = "engine stopped";
  try {
    while (drain_inbox(scheduler_.empty())) step();
  } catch (const std::exception& e) {
    // A backend failure (e.g. a device error) ends the engine: every request fails with the reason
    // and later submits are refused; the server reports itself unhealthy.
    message = std::string("engine failed: ") + e.what();
    reason = FinishReason::kError;
    {
      std::lock_guard lock(inbox_mutex_);
      stopping_ = true;
    }
    std::lock_guard lock(stats_mutex_);
    fatal_error_ = message;
  }
  for (auto& seq : scheduler_.remove_all()) finish_removed(std::move(seq), reason, message);
  std::vector<InboxItem> items;
  {
    std::lock_guard lock(inbox_mutex_);
    items.swap(inbox_);
  }
  for (InboxItem& item : items)
    if (item.submit) finish_removed(std::move(item.submit), reason, message);
}

std::string Engine::fatal_error() const {
  std::lock_guard lock(stats_mutex_);
  return fatal_error_;
}

// Moves new requests into the scheduler and applies aborts, in arrival order. When the engine has
// nothing to do it sleeps here until a message arrives.
bool Engine::drain_inbox(bool wait_for_work) {
  std::vector<InboxItem> items;
  {
    std::unique_lock lock(inbox_mutex_);
    if (wait_for_work) inbox_cv_.wait(lock, [&] { return stopping_ || !inbox_.empty(); });
    if (stopping_) return false;
    items.swap(inbox_);
  }
  bool aborted = false;
  for (InboxItem& item : items) {
    if (item.submit) {
      scheduler_.add(std::move(item.submit));
    } else if (auto seq = scheduler_.remove(item.abort_id)) {
      finish_removed(std::move(seq), FinishReason::kAbort, "");
      aborted = true;
    }
  }
  if (aborted) refresh_gauges();  // the engine may go idle now: do not leave stale gauges behind
  return true;
}

void Engine::refresh_gauges() {
  const KvUsage kv = kv_.usage();
  std::lock_guard lock(stats_mutex_);
  stats_.num_running = static_cast<int>(scheduler_.num_running());
  stats_.num_waiting = static_cast<int>(scheduler_.num_waiting());
  stats_.kv = kv;
}

void Engine::step() {
  StepStats st;
  const auto t0 = EngineClock::now();
  ScheduledBatch batch = scheduler_.schedule(speculator_ ? speculator_->plan(scheduler_) : 0);
  st.num_preempted = batch.num_preempted;
  st.num_running = static_cast<int>(scheduler_.num_running());
  st.num_waiting = static_cast<int>(scheduler_.num_waiting());
  if (batch.empty()) {
    // Nothing fits right now (the pool is held elsewhere): wait briefly for aborts or news.
    std::unique_lock lock(inbox_mutex_);
    inbox_cv_.wait_for(lock, std::chrono::milliseconds(1), [&] { return stopping_ || !inbox_.empty(); });
    return;
  }
  const auto t_planned = EngineClock::now();
  if (speculator_) speculator_->draft(batch);
  const auto t1 = EngineClock::now();
  ForwardBatch forward_batch = build_forward_batch(batch, kv_);
  const bool device_sampling = !speculator_ && can_sample_on_device(batch, backend_);
  forward_batch.host_logits = !device_sampling;
  const ForwardOutput out = backend_.forward(forward_batch);
  const auto t2 = EngineClock::now();
  st.unique_experts = out.unique_experts;
  st.weight_bytes_read = out.weight_bytes_read;
  st.launch = out.launch;
  std::vector<SequenceUpdate> updates;
  if (speculator_) {
    std::vector<std::vector<SampledToken>> emitted = speculator_->verify(batch, out, kv_, micros(t1, t2));
    updates = scheduler_.update(batch, emitted);
    speculator_->retain(scheduler_.running());
    record_speculation(speculator_->step_stats(), st);
  } else {
    std::vector<SampledToken> sampled =
        device_sampling ? sample_batch_on_device(batch, out, backend_) : sample_batch(batch, out);
    updates = scheduler_.update(batch, sampled);
  }
  const auto t3 = EngineClock::now();
  publish(updates, st);
  const auto t4 = EngineClock::now();

  st.num_seqs = static_cast<int>(batch.entries.size());
  st.num_tokens = batch.num_tokens;
  st.prefill_tokens = batch.prefill_tokens;
  st.decode_tokens = batch.decode_tokens;
  for (const SequenceUpdate& u : updates) st.num_sampled += static_cast<int>(u.tokens.size());
  st.schedule_us = micros(t0, t_planned);
  st.forward_us = micros(t1, t2);
  st.sample_us = micros(t2, t3);
  st.step_us = micros(t0, t4);
  {
    std::lock_guard lock(stats_mutex_);
    stats_.prefix_cache_queried_tokens += batch.prefix_queried_tokens;
    stats_.prefix_cache_hit_tokens += batch.prefix_hit_tokens;
  }
  record(st);
}

void Engine::publish(std::vector<SequenceUpdate>& updates, StepStats& st) {
  for (SequenceUpdate& u : updates) {
    Sequence* seq = u.seq;
    bool kept = true;
    for (SampledToken& t : u.tokens)
      kept = seq->stream->push(t.token, t.has_logprobs ? &t.logprobs : nullptr, seq->usage, seq->timing) && kept;
    if (u.finish != FinishReason::kNone) {
      finish_removed(std::move(u.owned), u.finish, "", u.stop_token);
      st.num_finished += 1;
    } else if (!kept) {
      finish_removed(scheduler_.remove(seq->id), FinishReason::kError,
                     "stream buffer overflow: the client did not read its tokens");
      st.num_finished += 1;
    }
  }
}

void Engine::finish_removed(std::unique_ptr<Sequence> seq, FinishReason reason, const std::string& error,
                            int32_t stop_token) {
  if (!seq) fail("finishing a sequence that is not there");
  seq->timing.finished = EngineClock::now();
  seq->stream->finish(reason, stop_token, error, seq->usage, seq->timing);
  unfinished_ -= 1;
  std::lock_guard lock(stats_mutex_);
  stats_.requests_finished[static_cast<int>(reason)] += 1;
}

void Engine::record_speculation(const SpecStepStats& spec, StepStats& st) {
  st.spec_draft_len = spec.draft_len;
  st.spec_drafts = spec.drafts;
  st.spec_draft_tokens = spec.draft_tokens;
  st.spec_accepted_tokens = spec.accepted_tokens;
  st.spec_accepted_per_position = spec.accepted_per_position;
  st.draft_us = spec.draft_us;
}

void Engine::record(const StepStats& step) {
  StepStats st = step;
  st.kv = kv_.usage();
  {
    std::lock_guard lock(stats_mutex_);
    st.step = stats_.steps++;
    stats_.prompt_tokens_computed += static_cast<uint64_t>(st.prefill_tokens);
    stats_.generation_tokens += static_cast<uint64_t>(st.num_sampled);
    stats_.preemptions += static_cast<uint64_t>(st.num_preempted);
    stats_.spec_drafts += static_cast<uint64_t>(st.spec_drafts);
    stats_.spec_draft_tokens += static_cast<uint64_t>(st.spec_draft_tokens);
    stats_.spec_accepted_tokens += static_cast<uint64_t>(st.spec_accepted_tokens);
    if (stats_.spec_accepted_per_position.size() < st.spec_accepted_per_position.size())
      stats_.spec_accepted_per_position.resize(st.spec_accepted_per_position.size());
    for (size_t j = 0; j < st.spec_accepted_per_position.size(); ++j)
      stats_.spec_accepted_per_position[j] += static_cast<uint64_t>(st.spec_accepted_per_position[j]);
    // The gauges as the step left them (st counts the sequences planned, some of which finished):
    // an engine that goes idle after this step must not report a finished request as running.
    stats_.num_running = static_cast<int>(scheduler_.num_running());
    stats_.num_waiting = static_cast<int>(scheduler_.num_waiting());
    stats_.kv = st.kv;
    stats_.last_step = st;
  }
  if (observer_) observer_(st);
}

}  // namespace ds4
