// TCP exchange of the group id (see id_exchange.h). Wire: the rank sends "DSID" + its rank (u32,
// little-endian); rank 0 answers "DSID" + the 128 id bytes.
#include "parallel/id_exchange.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "parallel/communicator.h"

namespace ds4 {
namespace {

constexpr char kMagic[4] = {'D', 'S', 'I', 'D'};
using Clock = std::chrono::steady_clock;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

std::pair<std::string, std::string> split_master(const std::string& master) {
  const size_t colon = master.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == master.size())
    throw CommError("--master: '" + master + "' is not HOST:PORT");
  return {master.substr(0, colon), master.substr(colon + 1)};
}

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(std::min<long long>(left, 1 << 30)) : 0;
}

// Reads or writes exactly n bytes before the deadline.
bool transfer(int fd, char* buf, size_t n, bool write_side, Clock::time_point deadline) {
  for (size_t done = 0; done < n;) {
    pollfd p{fd, short(write_side ? POLLOUT : POLLIN), 0};
    if (poll(&p, 1, ms_left(deadline)) <= 0) return false;
    const ssize_t k = write_side ? send(fd, buf + done, n - done, MSG_NOSIGNAL) : recv(fd, buf + done, n - done, 0);
    if (k <= 0) return false;
    done += static_cast<size_t>(k);
  }
  return true;
}

addrinfo* resolve(const std::string& host, const std::string& port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  const bool any = passive && (host == "0.0.0.0" || host == "*");
  if (const int e = getaddrinfo(any ? nullptr : host.c_str(), port.c_str(), &hints, &res); e != 0)
    throw CommError("--master " + host + ":" + port + ": " + gai_strerror(e));
  return res;
}

int listen_on(const std::string& master) {
  const auto [host, port] = split_master(master);
  addrinfo* res = resolve(host, port, true);
  int fd = -1;
  std::string why = "no address";
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 64) == 0) break;
    why = std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) throw CommError("rank 0 cannot listen on --master " + master + ": " + why);
  return fd;
}

// One rank's request: its rank number, answered with the id. Returns the rank, or -1 for a peer
// that is not a ds4serve rank (ignored).
int answer(int fd, int world, const GroupId& id, Clock::time_point deadline) {
  char hello[8];
  if (!transfer(fd, hello, sizeof hello, false, deadline) || std::memcmp(hello, kMagic, 4) != 0) return -1;
  uint32_t rank = 0;
  std::memcpy(&rank, hello + 4, 4);
  if (rank < 1 || rank >= uint32_t(world))
    throw CommError("a rank " + std::to_string(rank) + " asked for the group id of a world of " + std::to_string(world));
  char reply[4 + 128];
  std::memcpy(reply, kMagic, 4);
  std::memcpy(reply + 4, id.data(), id.size());
  return transfer(fd, reply, sizeof reply, true, deadline) ? static_cast<int>(rank) : -1;
}

}  // namespace

void serve_group_id(const std::string& master, int world, const GroupId& id, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  Fd listener{listen_on(master)};
  std::vector<bool> served(world > 0 ? world : 0, false);
  for (int left = world - 1; left > 0;) {
    pollfd p{listener.fd, POLLIN, 0};
    if (poll(&p, 1, ms_left(deadline)) <= 0)
      throw CommError("rank 0: " + std::to_string(left) + " rank(s) did not ask for the group id at --master " + master +
                      " in time");
    Fd peer{accept(listener.fd, nullptr, nullptr)};
    if (peer.fd < 0) continue;
    const int rank = answer(peer.fd, world, id, std::min(deadline, Clock::now() + std::chrono::seconds(10)));
    if (rank < 0) continue;
    if (served[rank]) throw CommError("two processes claim rank " + std::to_string(rank));
    served[rank] = true;
    --left;
  }
}

GroupId fetch_group_id(const std::string& master, int rank, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  const auto [host, port] = split_master(master);
  for (;;) {
    addrinfo* res = resolve(host, port, false);
    for (addrinfo* a = res; a; a = a->ai_next) {
      Fd fd{socket(a->ai_family, a->ai_socktype, a->ai_protocol)};
      if (fd.fd < 0 || connect(fd.fd, a->ai_addr, a->ai_addrlen) != 0) continue;
      char hello[8];
      std::memcpy(hello, kMagic, 4);
      const uint32_t r = static_cast<uint32_t>(rank);
      std::memcpy(hello + 4, &r, 4);
      char reply[4 + 128];
      if (transfer(fd.fd, hello, sizeof hello, true, deadline) && transfer(fd.fd, reply, sizeof reply, false, deadline) &&
          std::memcmp(reply, kMagic, 4) == 0) {
        freeaddrinfo(res);
        GroupId id;
        std::memcpy(id.data(), reply + 4, id.size());
        return id;
      }
    }
    freeaddrinfo(res);
    if (Clock::now() > deadline)
      throw CommError("rank " + std::to_string(rank) + ": no group id from rank 0 at --master " + master + " in time");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // rank 0 may not listen yet
  }
}

}  // namespace ds4
