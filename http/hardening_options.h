// The hardening flags of ds4serve: per-request limits (request_limits.h), who may read /health and
// /metrics, and whether prompt text may reach the log. Parsed by apply_hardening_option (called by
// server_options.cpp for the flags it does not know), read by session.cpp and generation_route.cpp.
// Design: /health and /metrics are public by default (load balancers and Prometheus scrapers
// usually hold no API key, and neither shows request content); "key" puts them behind --api-key,
// "off" answers 404 (for /metrics). Prompt text is never logged unless --log-prompts is given.
// Also the request-preparation pool (prepare_pool.h: --prepare-threads, --max-prepare-queue) and
// the per-address connection limit (address_limit.h: --max-connections-per-ip, off by default:
// behind a reverse proxy or a NAT every client shares one address, so any default would refuse
// legitimate clients there).
#pragma once
#include <string>

#include "http/request_limits.h"

namespace ds4::http {

enum class EndpointAccess { kPublic, kKey, kOff };

struct HardeningOptions {
  RequestLimits request;
  EndpointAccess health_access = EndpointAccess::kPublic;   // kOff is refused for /health
  EndpointAccess metrics_access = EndpointAccess::kPublic;
  bool log_prompts = false;  // log each generation's prompt text (escaped, cut to 4 KiB)
  int header_timeout_seconds = 10;  // from a request's first byte to the end of its header; also
                                    // from accepting a connection to its first request's first byte
  int prepare_threads = 2;              // threads that parse, render and tokenize requests
  int max_prepare_queue = 256;          // preparations waiting for one of them; more get 503
  int max_connections_per_address = 0;  // open connections per client address; 0: no limit
};

struct ServerOptions;

extern const char* const kHardeningUsage;

// Value-taking hardening flags; false when `opt` is not one of them. Throws LoadError naming the
// flag on a bad value.
// Writes o.hardening (and o.limits.max_connections).
bool apply_hardening_option(ServerOptions& o, const std::string& opt, const std::string& value);
// Throws LoadError when the options contradict each other ("key" access without any API key).
void check_hardening_options(const HardeningOptions& h, bool have_api_keys);
// Flags without a value (--log-prompts); false when `opt` is not one of them.
bool apply_hardening_switch(HardeningOptions& h, const std::string& opt);

}  // namespace ds4::http
