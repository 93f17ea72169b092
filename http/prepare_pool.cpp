// The request-preparation pool (see prepare_pool.h).
#include "http/prepare_pool.h"

#include <string>

namespace ds4::http {

PreparePool::PreparePool(int threads, int max_queued)
    : pool_(static_cast<std::size_t>(threads < 1 ? 1 : threads)),
      capacity_((threads < 1 ? 1 : threads) + (max_queued < 0 ? 0 : max_queued)) {}

PreparePool::~PreparePool() { join(); }

void PreparePool::join() { pool_.join(); }

bool PreparePool::try_reserve() {
  int now = outstanding_.load();
  while (now < capacity_)
    if (outstanding_.compare_exchange_weak(now, now + 1)) return true;
  return false;
}

ApiError PreparePool::overloaded_error() const {
  return unavailable("The server cannot take the request now: " + std::to_string(capacity_) +
                         " requests are already being tokenized or waiting for it",
                     "server_overloaded", 1);
}

}  // namespace ds4::http
