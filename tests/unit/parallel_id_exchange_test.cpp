// The TCP exchange of the group id for ranks on several hosts (parallel/id_exchange.h), over
// localhost: every rank gets rank 0's id, also when it starts before rank 0 listens; a missing
// rank, a missing rank 0 and a rank outside the world end in errors naming the problem, in time.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "parallel/communicator.h"
#include "parallel/id_exchange.h"

namespace ds4 {
namespace {

using namespace std::chrono_literals;

// A port that was free a moment ago on 127.0.0.1.
std::string free_master() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
}

GroupId some_id() {
  GroupId id;
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<char>(i * 7 + 3);
  return id;
}

TEST(GroupIdExchange, EveryRankGetsRankZerosIdEvenWhenStartingFirst) {
  const std::string master = free_master();
  const GroupId id = some_id();
  std::vector<GroupId> got(4);
  std::vector<std::string> errors(4);
  std::vector<std::thread> ranks;
  for (int r = 1; r < 4; ++r)
    ranks.emplace_back([&, r] {
      try {
        got[r] = fetch_group_id(master, r, 10s);
      } catch (const CommError& e) {
        errors[r] = e.what();
      }
    });
  std::this_thread::sleep_for(200ms);  // the ranks retry until rank 0 listens
  EXPECT_NO_THROW(serve_group_id(master, 4, id, 10s));
  for (auto& t : ranks) t.join();
  for (int r = 1; r < 4; ++r) {
    EXPECT_EQ(errors[r], "");
    EXPECT_EQ(got[r], id);
  }
}

TEST(GroupIdExchange, MissingRanksAndBadRanksEndInErrors) {
  const std::string master = free_master();
  try {
    serve_group_id(master, 2, some_id(), 200ms);
    ADD_FAILURE() << "served without rank 1";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("1 rank(s) did not ask"), std::string::npos) << e.what();
  }
  try {
    fetch_group_id(free_master(), 1, 300ms);
    ADD_FAILURE() << "an id without rank 0";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("no group id from rank 0"), std::string::npos) << e.what();
  }
  std::thread stray([&] { EXPECT_THROW(fetch_group_id(master, 5, 1s), CommError); });
  try {
    serve_group_id(master, 2, some_id(), 5s);
    ADD_FAILURE() << "accepted rank 5 of 2";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 5 asked for the group id of a world of 2"), std::string::npos) << e.what();
  }
  stray.join();
  EXPECT_THROW(serve_group_id("nohostport", 2, some_id(), 100ms), CommError);
}

}  // namespace
}  // namespace ds4
