// HttpServer: the listening socket and the io threads that run every connection (Boost.Asio /
// Beast, one strand per connection). Starts before the model is loaded (/health answers 503 until
// set_service publishes it); drain() implements SIGTERM: stop accepting, refuse new generations
// with 503, let in-flight ones finish up to the drain timeout. Owned by main.
#pragma once
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "http/server_options.h"
#include "http/server_state.h"

namespace ds4::http {

class HttpServer {
 public:
  explicit HttpServer(const ServerOptions& options);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts the io threads. Throws std::runtime_error naming the address on failure.
  void start();
  uint16_t port() const { return port_; }  // the bound port (useful with --port 0)
  // Routes that need the model answer from now on. service must outlive the server's use of it.
  void set_service(ModelService* service);
  // Stops accepting and waits until no generation is in flight or the drain timeout passed.
  // Returns the number of generations still running.
  int drain();
  // Stops the io threads (open connections are dropped). Idempotent.
  void stop();
  ServerState& state() { return *state_; }

 private:
  struct Impl;
  const ServerOptions& options_;
  std::unique_ptr<ServerState> state_;
  std::unique_ptr<Impl> impl_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
};

}  // namespace ds4::http
