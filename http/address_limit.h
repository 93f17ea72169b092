// ConnectionsPerAddress: the open client connections of each remote address, for
// --max-connections-per-ip (hardening_options.h). The accept loop (http_server.cpp) asks
// try_open() before it starts a session and refuses the connection the way --max-connections
// does (accepted and closed at once) when the address already holds the limit; the session's end
// calls close(). An IPv4-mapped IPv6 address counts as its IPv4 address. Entries are erased at
// zero, so the table holds at most one entry per open connection. A limit of 0 turns it off (no
// counting). Thread-safe (the accept strand opens, the sessions' strands close).
#pragma once
#include <boost/asio/ip/address.hpp>

#include <map>
#include <mutex>

namespace ds4::http {

class ConnectionsPerAddress {
 public:
  explicit ConnectionsPerAddress(int max_per_address) : max_(max_per_address) {}

  // Counts a new connection of `address`; false (nothing counted) when it already holds the limit.
  bool try_open(const boost::asio::ip::address& address);
  // A connection counted by try_open ended.
  void close(const boost::asio::ip::address& address);
  int open_from(const boost::asio::ip::address& address) const;
  size_t addresses() const;  // addresses with at least one open connection
  bool enabled() const { return max_ > 0; }

 private:
  const int max_;
  mutable std::mutex mutex_;
  std::map<boost::asio::ip::address, int> open_;
};

}  // namespace ds4::http
