// Per-address connection counting (see address_limit.h).
#include "http/address_limit.h"

namespace ds4::http {

namespace {

boost::asio::ip::address canonical(const boost::asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
  return a;
}

}  // namespace

bool ConnectionsPerAddress::try_open(const boost::asio::ip::address& address) {
  if (!enabled()) return true;
  std::lock_guard lock(mutex_);
  int& n = open_[canonical(address)];
  if (n >= max_) return false;  // n >= 1 here: the entry stays
  ++n;
  return true;
}

void ConnectionsPerAddress::close(const boost::asio::ip::address& address) {
  if (!enabled()) return;
  std::lock_guard lock(mutex_);
  const auto it = open_.find(canonical(address));
  if (it == open_.end()) return;
  if (--it->second <= 0) open_.erase(it);
}

int ConnectionsPerAddress::open_from(const boost::asio::ip::address& address) const {
  std::lock_guard lock(mutex_);
  const auto it = open_.find(canonical(address));
  return it == open_.end() ? 0 : it->second;
}

size_t ConnectionsPerAddress::addresses() const {
  std::lock_guard lock(mutex_);
  return open_.size();
}

}  // namespace ds4::http
