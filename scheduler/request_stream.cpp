// RequestStream (see engine_api.h): a locked pending chunk the engine appends to and readers take
// whole. The writer never waits: it appends under a short lock and notifies after unlocking.
#include "scheduler/engine_api.h"

#include <utility>

namespace ds4 {

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone: return "";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kAbort: return "abort";
    case FinishReason::kError: return "error";
  }
  return "";
}

RequestStream::RequestStream(RequestId id, size_t capacity_tokens, Notify notify)
    : id_(id), capacity_tokens_(capacity_tokens), notify_(std::move(notify)) {}

bool RequestStream::poll(StreamChunk& out) {
  std::lock_guard lock(mutex_);
  notified_ = false;  // re-arm: the next publication notifies again
  if (!has_news_) return false;
  out = std::move(pending_);
  pending_ = StreamChunk{};
  // Later chunks still report the latest usage and timing.
  pending_.usage = out.usage;
  pending_.timing = out.timing;
  has_news_ = false;
  if (out.finished()) final_taken_ = true;
  return true;
}

bool RequestStream::wait_for(StreamChunk& out, std::chrono::milliseconds timeout) {
  {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, timeout, [&] { return has_news_; });
  }
  return poll(out);
}

bool RequestStream::finished() const {
  std::lock_guard lock(mutex_);
  return final_published_;
}

// Called with the lock held; releases it before invoking the callback (which may post elsewhere).
void RequestStream::notify_locked(std::unique_lock<std::mutex>& lock) {
  has_news_ = true;
  const bool call = notify_ && !notified_;
  notified_ = notified_ || call;
  lock.unlock();
  cv_.notify_all();
  if (call) notify_();
}

bool RequestStream::push(int32_t token, SampledLogprobs* logprobs, const RequestUsage& usage,
                         const RequestTiming& timing) {
  std::unique_lock lock(mutex_);
  if (final_published_) return true;
  if (pending_.tokens.size() >= capacity_tokens_) return false;
  pending_.tokens.push_back(token);
  if (logprobs) pending_.logprobs.push_back(std::move(*logprobs));
  pending_.usage = usage;
  pending_.timing = timing;
  notify_locked(lock);
  return true;
}

void RequestStream::finish(FinishReason reason, int32_t stop_token, std::string error, const RequestUsage& usage,
                           const RequestTiming& timing) {
  std::unique_lock lock(mutex_);
  if (final_published_) return;
  final_published_ = true;
  pending_.finish_reason = reason;
  pending_.stop_token = stop_token;
  pending_.error = std::move(error);
  pending_.usage = usage;
  pending_.timing = timing;
  notify_locked(lock);
}

}  // namespace ds4
