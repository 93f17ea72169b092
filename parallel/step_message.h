// StepMessage: what a follower rank needs to run the same forward as the leader (docs/PARALLEL.md
// section 7): the KV storage operations the leader's pool made since the previous message
// (prefix-cache snapshot copies, slot fills) and the backend rollbacks, in order, then per sequence
// its pool slot, start position, block table, flags and tokens. Encoded little-endian with a
// magic and version; decode refuses truncated, oversized or inconsistent bytes with a message.
// send_step / receive_step move one message from rank 0 to every rank (size, then bytes).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace ds4 {

// One operation on the follower's KV pool, applied in message order.
struct KvOp {
  enum class Kind : uint8_t { kCopy = 1, kFill = 2, kRollback = 3 };
  Kind kind = Kind::kCopy;
  int32_t region = 0;      // copy: destination; fill: the region
  int64_t offset = 0;      // copy: destination byte offset; fill: byte offset; rollback: the pool slot
  int32_t src_region = 0;  // copy only
  int64_t src_offset = 0;  // copy only
  int64_t size = 0;        // copy: bytes; fill: f32 values; rollback: the position to return to
  float value = 0.0f;      // fill only
  bool operator==(const KvOp&) const = default;
};

struct StepSequence {
  int64_t slot = 0;             // the sequence's slot in the pool
  int64_t start = 0;            // KV positions before this step (the first token's position)
  std::vector<int32_t> blocks;  // block table: logical block i -> physical block id
  std::vector<int32_t> tokens;  // the step's tokens (>= 1)
  bool all_logits = false;
  bool speculative = false;
  bool operator==(const StepSequence&) const = default;
};

struct StepMessage {
  // kForward: apply ops, then run the sequences' forward. kOps: apply ops only, now (rollbacks: a
  // device backend's rollback runs a forward with collectives, so every rank must do it together).
  // kStop: apply ops, then return.
  enum class Kind : uint8_t { kForward = 1, kStop = 2, kOps = 3 };
  Kind kind = Kind::kForward;
  uint64_t step = 0;  // 1, 2, ... (followers check the order)
  bool host_logits = true;
  std::vector<KvOp> ops;
  std::vector<StepSequence> sequences;
  bool operator==(const StepMessage&) const = default;
};

std::vector<uint8_t> encode_step_message(const StepMessage& message);
// Decodes into out; returns "" or what is wrong with the bytes (out is then unspecified).
std::string decode_step_message(std::span<const uint8_t> bytes, StepMessage& out);

// Rank 0: broadcasts the message (its size, then its bytes). Other ranks: receive_step. Both throw
// CommError on a transport failure; receive_step also on bytes that do not decode.
void send_step(Communicator& comm, const StepMessage& message);
StepMessage receive_step(Communicator& comm);

}  // namespace ds4
