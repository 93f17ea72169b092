// RequestRecord: what ds4serve-load measured about one HTTP request (times, token counts, error).
// Invariant: every time is seconds on the steady clock, relative to the request's own start
// (start_s is relative to the run epoch); a field that was never observed is std::nullopt / -1.
// Filled by StreamingRequest (http_client.cpp); read by the statistics (stats.cpp) and reports.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ds4::loadtest {

// Why a request failed. kNone means it completed: a 200 response whose stream ended normally.
enum class ErrorKind {
  kNone,
  kConnect,      // could not resolve or connect (refused, unreachable)
  kHttpStatus,   // a non-200 status (http_status holds it)
  kTimeout,      // the per-request deadline passed
  kDisconnect,   // the server closed the connection before the stream ended
  kStreamError,  // an SSE event carried {"error": ...}
  kProtocol,     // malformed HTTP, SSE or JSON, or a stream without any token
  kCancelled,    // the run was stopped (Ctrl-C) while this request was in flight
};

std::string_view error_kind_name(ErrorKind kind);

struct RequestRecord {
  int64_t index = 0;          // order in which the level issued it
  double start_s = 0;         // when it was issued, seconds since the run epoch
  double queue_s = 0;         // open loop: time waited for the concurrency cap before issuing
  std::optional<double> ttfr_s;  // first SSE event with a non-empty "choices" (may be role-only)
  std::optional<double> ttft_s;  // first event carrying content, reasoning, text or a tool call
  std::vector<double> token_times_s;  // arrival of every token-carrying event (ttft_s is the first)
  double end_s = 0;           // when the response ended (after [DONE] / end of body), or failed
  int64_t expected_input_tokens = -1;  // what the workload aimed for (-1: unknown, e.g. JSONL text)
  int64_t max_tokens = 0;     // output limit sent
  int64_t usage_prompt_tokens = -1;      // from the server's usage object (-1: none sent)
  int64_t usage_completion_tokens = -1;  // idem
  std::string finish_reason;  // last finish_reason seen ("stop", "length", ...)
  ErrorKind error = ErrorKind::kNone;
  int http_status = 0;
  std::string error_detail;   // short human-readable reason (status body excerpt, asio message)

  bool ok() const { return error == ErrorKind::kNone; }
  // Number of token-carrying stream events.
  int64_t chunk_tokens() const { return static_cast<int64_t>(token_times_s.size()); }
  // Output tokens: the server's usage when it sent one, else the number of token events.
  int64_t output_tokens() const {
    return usage_completion_tokens >= 0 ? usage_completion_tokens : chunk_tokens();
  }
  // Time per output token after the first: (t_last_token - ttft) / (output_tokens - 1).
  std::optional<double> tpot_s() const;
  // Decode rate of this request as llama-benchy counts it: (events - 1) / (t_last - t_first).
  std::optional<double> decode_tokens_per_s() const;
};

}  // namespace ds4::loadtest
