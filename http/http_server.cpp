// HttpServer (see http_server.h): acceptor coroutine (with the --max-connections and
// --max-connections-per-ip refusals), io threads, drain, and ServerState's log.
#include "http/http_server.h"

#include <cstdio>
#include <stdexcept>

#include "http/request_limits.h"
#include "http/session.h"

namespace ds4::http {

void ServerState::log(std::string_view line) const {
  std::string s = "ds4serve: ";
  s += line;
  s += '\n';
  std::fwrite(s.data(), 1, s.size(), stderr);
}

void ServerState::log_ignored_fields(const std::vector<std::string>& fields) {
  for (const std::string& f : fields) {
    {
      std::lock_guard lock(ignored_mutex_);
      if (ignored_logged_.size() >= 256 || !ignored_logged_.insert(f).second) continue;  // bounded, once each
    }
    log("ignoring unknown request field '" + loggable(f, 64) + "' (logged once)");
  }
}

struct HttpServer::Impl {
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  // The accept loop and drain's close run on this strand: an acceptor is not thread-safe, and with
  // several io threads the close could otherwise run while the loop touches it (found by TSan).
  net::strand<net::io_context::executor_type> accept_strand = net::make_strand(ioc);
  net::executor_work_guard<net::io_context::executor_type> work{ioc.get_executor()};
};

namespace {

net::awaitable<void> accept_loop(tcp::acceptor& acceptor, ServerState& state) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(net::as_tuple(net::use_awaitable));
    if (!acceptor.is_open()) co_return;
    if (ec) continue;  // e.g. too many open files: try the next one
    // Over --max-connections, or over --max-connections-per-ip for the peer's address (or the
    // peer is already gone): accepted and closed at once.
    beast::error_code peer_ec;
    const net::ip::address peer = socket.remote_endpoint(peer_ec).address();
    if (state.connections.load() >= state.options.limits.max_connections || peer_ec ||
        !state.connections_by_address.try_open(peer)) {
      beast::error_code ignored;
      socket.close(ignored);
      continue;
    }
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);  // one SSE chunk per token: no Nagle delay
    state.connections.fetch_add(1);
    auto strand = net::make_strand(acceptor.get_executor());
    net::co_spawn(strand, run_session(std::move(socket), state), [&state, peer](std::exception_ptr e) {
      state.connections_by_address.close(peer);
      state.connections.fetch_sub(1);
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        state.log(std::string("connection ended by an error: ") + ex.what());
      }
    });
  }
}

}  // namespace

HttpServer::HttpServer(const ServerOptions& options)
    : options_(options), state_(std::make_unique<ServerState>(options)), impl_(std::make_unique<Impl>()) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  beast::error_code ec;
  const auto address = net::ip::make_address(options_.host, ec);
  if (ec) throw std::runtime_error("--host: '" + options_.host + "' is not an IP address");
  const tcp::endpoint endpoint(address, options_.port);
  tcp::acceptor& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    throw std::runtime_error("cannot listen on " + options_.host + ":" + std::to_string(options_.port) + ": " +
                             ec.message());
  port_ = a.local_endpoint().port();
  net::co_spawn(impl_->accept_strand, accept_loop(a, *state_), net::detached);
  for (int i = 0; i < options_.io_threads; ++i) threads_.emplace_back([this] { impl_->ioc.run(); });
}

void HttpServer::set_service(ModelService* service) { state_->service.store(service); }

int HttpServer::drain() {
  state_->draining = true;
  net::post(impl_->accept_strand, [this] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(options_.limits.drain_timeout_seconds);
  while (state_->in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return state_->in_flight.load();
}

void HttpServer::stop() {
  impl_->work.reset();
  impl_->ioc.stop();
  for (std::thread& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  // Preparations still running refer to their sessions' requests and to the model: let them end
  // now, while both exist (their completions stay queued on the stopped io_context).
  state_->prepare_pool.join();
}

}  // namespace ds4::http
