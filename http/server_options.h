// The ds4serve command line: what to serve (model service options) and how (listener, auth, CORS,
// limits, timeouts, drain). parse_server_options returns the options or throws LoadError naming the
// option at fault. Called by http/main.cpp; tested by tests/unit/http_options_test.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "http/hardening_options.h"
#include "http/model_service.h"
#include "http/parallel_options.h"

namespace ds4::http {

struct HttpLimits {
  uint32_t max_header_bytes = 64 * 1024;
  uint64_t max_body_bytes = 32ull << 20;  // 32 MiB: long prompts with tool schemas fit
  int read_timeout_seconds = 60;          // to receive a whole request (header and body)
  int write_timeout_seconds = 60;         // for one write to a slow client
  int idle_timeout_seconds = 120;         // keep-alive connection with no request
  int heartbeat_ms = 10000;               // SSE comment while no token arrives
  int drain_timeout_seconds = 30;         // SIGTERM: how long in-flight requests may finish
  int max_connections = 1024;
};

struct ServerOptions {
  ServiceOptions service;
  std::string host = "127.0.0.1";
  uint16_t port = 8000;
  std::vector<std::string> api_keys;      // empty: no authentication
  std::vector<std::string> cors_origins;  // "*" allows any origin; empty: no CORS headers
  int io_threads = 2;
  HttpLimits limits;
  HardeningOptions hardening;             // request limits, /health and /metrics access, prompt logging
  ParallelOptions parallel;               // --gpus / --rank --world --master (several GPUs: not yet served)
};

extern const char* const kServerUsage;

// An integer option value in [lo, hi]; throws LoadError naming the option.
int64_t parse_int_option(const std::string& opt, const std::string& v, int64_t lo, int64_t hi);

// argv without the program name. `default_model` is used when --model is not given.
// Throws LoadError ("--port: '70000' is not a port number", ...). Sets help when -h/--help.
ServerOptions parse_server_options(const std::vector<std::string>& args, const std::string& default_model,
                                   bool& help);

}  // namespace ds4::http
