// What every connection of the server shares: the options, the model service once it is loaded
// (null before: routes that need the model answer 503), the draining flag, in-flight counters, the
// per-address connection counts, the request-preparation pool and the log. Owned by HttpServer;
// sessions hold a reference for the server's lifetime. Thread-safe.
#pragma once
#include <atomic>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "http/address_limit.h"
#include "http/model_service.h"
#include "http/prepare_pool.h"
#include "http/server_options.h"

namespace ds4::http {

struct ServerState {
  explicit ServerState(const ServerOptions& o)
      : options(o),
        connections_by_address(o.hardening.max_connections_per_address),
        prepare_pool(o.hardening.prepare_threads, o.hardening.max_prepare_queue) {}

  const ServerOptions& options;
  std::atomic<ModelService*> service{nullptr};
  std::atomic<bool> draining{false};
  std::atomic<int> in_flight{0};     // generation requests being served
  std::atomic<int> connections{0};   // open client connections
  ConnectionsPerAddress connections_by_address;  // --max-connections-per-ip
  PreparePool prepare_pool;          // parsing, rendering, tokenization (off the io threads)

  // Logs a line to stderr (one write, so lines from io threads do not interleave).
  void log(std::string_view line) const;
  // Logs "ignoring unknown field X" the first time each field name is seen.
  void log_ignored_fields(const std::vector<std::string>& fields);

 private:
  std::mutex ignored_mutex_;
  std::set<std::string, std::less<>> ignored_logged_;
};

// Counts a generation request as in flight for its lifetime (drain waits for zero).
class InFlight {
 public:
  explicit InFlight(ServerState& s) : s_(s) { s_.in_flight.fetch_add(1); }
  ~InFlight() { s_.in_flight.fetch_sub(1); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  ServerState& s_;
};

}  // namespace ds4::http
