// Parsing of the hardening flags (see hardening_options.h).
#include "http/hardening_options.h"

#include <cstdint>
#include <limits>

#include "engine/load_error.h"
#include "http/server_options.h"

namespace ds4::http {

const char* const kHardeningUsage =
    "limits and access (defaults in brackets):\n"
    "  --max-waiting N           requests queued beyond --max-num-seqs; more get 503 + Retry-After [256]\n"
    "  --max-tokens N            most max_tokens a request may ask for [the context]\n"
    "  --max-stop N              stop strings per request [64]\n"
    "  --max-stop-bytes N        bytes per stop string [1024]\n"
    "  --max-tools N             tool definitions per request [256]\n"
    "  --max-messages N          chat messages per request [4096]\n"
    "  --health-access public|key       /health without or with an API key [public]\n"
    "  --metrics-access public|key|off  /metrics without or with an API key, or not served [public]\n"
    "  --header-timeout S        from a request's first byte to the end of its header, and from a new\n"
    "                            connection to its first request [10]\n"
    "  --max-connections N       open client connections; more are closed at once [1024]\n"
    "  --max-connections-per-ip N  open connections from one client address; more are closed at once\n"
    "                            [0: no limit; behind a proxy all clients share its address]\n"
    "  --prepare-threads N       threads that parse, render and tokenize requests off the io threads [2]\n"
    "  --max-prepare-queue N     requests waiting for a --prepare-threads thread; more get 503 +\n"
    "                            Retry-After [256]\n"
    "  --log-prompts             log each generation's prompt text (never logged otherwise)\n";

namespace {

EndpointAccess parse_access(const std::string& opt, const std::string& v, bool allow_off) {
  if (v == "public") return EndpointAccess::kPublic;
  if (v == "key") return EndpointAccess::kKey;
  if (v == "off" && allow_off) return EndpointAccess::kOff;
  throw LoadError(opt + ": '" + v + "' is not one of public, key" + (allow_off ? ", off" : ""));
}

size_t parse_count(const std::string& opt, const std::string& v) {
  return static_cast<size_t>(parse_int_option(opt, v, 1, std::numeric_limits<int32_t>::max()));
}

}  // namespace

bool apply_hardening_option(ServerOptions& o, const std::string& opt, const std::string& v) {
  HardeningOptions& h = o.hardening;
  RequestLimits& r = h.request;
  if (opt == "--max-tokens") r.max_tokens = parse_int_option(opt, v, 1, std::numeric_limits<int32_t>::max());
  else if (opt == "--max-stop") r.max_stop = parse_count(opt, v);
  else if (opt == "--max-stop-bytes") r.max_stop_bytes = parse_count(opt, v);
  else if (opt == "--max-tools") r.max_tools = parse_count(opt, v);
  else if (opt == "--max-messages") r.max_messages = parse_count(opt, v);
  else if (opt == "--health-access") h.health_access = parse_access(opt, v, false);
  else if (opt == "--metrics-access") h.metrics_access = parse_access(opt, v, true);
  else if (opt == "--header-timeout") h.header_timeout_seconds = static_cast<int>(parse_int_option(opt, v, 1, 3600));
  else if (opt == "--max-connections") o.limits.max_connections = static_cast<int>(parse_int_option(opt, v, 1, 1 << 20));
  else if (opt == "--max-connections-per-ip")
    h.max_connections_per_address = static_cast<int>(parse_int_option(opt, v, 0, 1 << 20));
  else if (opt == "--prepare-threads") h.prepare_threads = static_cast<int>(parse_int_option(opt, v, 1, 256));
  else if (opt == "--max-prepare-queue") h.max_prepare_queue = static_cast<int>(parse_int_option(opt, v, 0, 1 << 20));
  else return false;
  return true;
}

void check_hardening_options(const HardeningOptions& h, bool have_api_keys) {
  if (have_api_keys) return;
  if (h.health_access == EndpointAccess::kKey) throw LoadError("--health-access key: no --api-key is configured");
  if (h.metrics_access == EndpointAccess::kKey) throw LoadError("--metrics-access key: no --api-key is configured");
}

bool apply_hardening_switch(HardeningOptions& h, const std::string& opt) {
  if (opt != "--log-prompts") return false;
  h.log_prompts = true;
  return true;
}

}  // namespace ds4::http
