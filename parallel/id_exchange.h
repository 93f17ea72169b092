// Start-up exchange of the 128-byte NCCL group id over TCP for ranks on several hosts
// (docs/PARALLEL.md section 1): rank 0 listens on --master HOST:PORT and hands the id to every other
// rank, which connects (retrying while rank 0 is not up yet) and says its rank. The only bytes the
// ranks exchange outside NCCL; NCCL's own bootstrap then does the rest. Blocking calls, start-up only.
#pragma once
#include <array>
#include <chrono>
#include <string>

namespace ds4 {

using GroupId = std::array<char, 128>;

// Rank 0: listens on host:port (host "0.0.0.0" or "*": every interface) until each of ranks
// 1 .. world-1 has fetched the id once. Throws CommError naming the problem (address in use, a
// rank out of range or twice, timeout).
void serve_group_id(const std::string& master, int world, const GroupId& id, std::chrono::milliseconds timeout);

// Rank > 0: connects to master (retrying until timeout) and returns rank 0's id. Throws CommError.
GroupId fetch_group_id(const std::string& master, int rank, std::chrono::milliseconds timeout);

}  // namespace ds4
