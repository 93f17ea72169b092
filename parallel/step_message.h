// StepMessage: what a follower rank needs to run its part of the leader's step (docs/PARALLEL.md
// section 7): the KV storage operations the leader's pools made since the previous message
// (prefix-cache snapshot copies, slot fills) and the backend rollbacks, in order, then per sequence
// its pool slot, start position, block table, flags and tokens. Replicated attention: every rank
// applies every operation and runs every sequence (rank kAllRanks). Data-parallel attention
// (version 2): each operation and sequence names the one rank whose pool and forward it is for,
// the ranks return their results to rank 0 after the forward, and a kSample message asks each rank
// to draw the tokens of its own logit rows. Encoded little-endian with a magic and version; decode
// refuses truncated, oversized or inconsistent bytes with a message. send_step / receive_step move
// one message from rank 0 to every rank (size, then bytes).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/forward.h"
#include "parallel/communicator.h"

namespace ds4 {

// The rank of an operation or sequence that is for every rank (replicated attention).
constexpr int32_t kAllRanks = -1;

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
  int32_t rank = kAllRanks;  // data-parallel: the rank whose pool it changes
  bool operator==(const KvOp&) const = default;
};

struct StepSequence {
  int64_t slot = 0;             // the sequence's slot in the pool
  int64_t start = 0;            // KV positions before this step (the first token's position)
  std::vector<int32_t> blocks;  // block table: logical block i -> physical block id
  std::vector<int32_t> tokens;  // the step's tokens (>= 1)
  bool all_logits = false;
  bool speculative = false;
  int32_t rank = kAllRanks;     // data-parallel: the rank that holds its KV and runs it
  bool operator==(const StepSequence&) const = default;
};

// kSample: how to draw the token of one logit row of the last forward, and which rank holds the row.
struct SampleRow {
  int32_t rank = 0;
  RowSampling sampling;
  bool operator==(const SampleRow& o) const {
    const SamplingParams &a = sampling.params, &b = o.sampling.params;
    return rank == o.rank && sampling.step == o.sampling.step && a.temperature == b.temperature &&
           a.top_p == b.top_p && a.min_p == b.min_p && a.top_k == b.top_k && a.seed == b.seed;
  }
};

struct StepMessage {
  // kForward: apply ops, then run the sequences' forward. kOps: apply ops only, now (rollbacks: a
  // device backend's rollback runs a forward with collectives, so every rank must do it together).
  // kStop: apply ops, then return. kSample (data-parallel): draw the tokens of `samples`, the rows of
  // the last forward in its order, each rank its own (Backend::sample_rows), and return them to rank 0.
  enum class Kind : uint8_t { kForward = 1, kStop = 2, kOps = 3, kSample = 4 };
  Kind kind = Kind::kForward;
  uint64_t step = 0;  // 1, 2, ... (followers check the order)
  bool host_logits = true;
  // Data-parallel attention: every operation and sequence names its rank, and after a forward each
  // rank returns its results to rank 0 (parallel/step_results.h).
  bool data_parallel = false;
  std::vector<KvOp> ops;
  std::vector<StepSequence> sequences;
  std::vector<SampleRow> samples;  // kSample only
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
