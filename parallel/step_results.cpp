// Step results of data-parallel attention (see step_results.h).
#include "parallel/step_results.h"

#include <cstring>
#include <string>

namespace ds4 {
namespace {

constexpr size_t kCounterBytes = 2 * sizeof(int64_t);  // unique_experts, weight_bytes_read

// Per-rank totals of a forward message: count(s) summed over each rank's sequences.
std::vector<int64_t> per_rank(const StepMessage& m, int world, int64_t (*count)(const StepSequence&)) {
  std::vector<int64_t> totals(static_cast<size_t>(world), 0);
  for (const StepSequence& s : m.sequences) {
    if (s.rank < 0 || s.rank >= world) throw CommError("step message: sequence of rank " + std::to_string(s.rank));
    totals[static_cast<size_t>(s.rank)] += count(s);
  }
  return totals;
}

int64_t sequence_tokens(const StepSequence& s) { return static_cast<int64_t>(s.tokens.size()); }

// Segments of an exchange in which every follower sends `follower_bytes[r]` to rank 0.
struct ToLeader {
  std::vector<size_t> send, recv;
};
ToLeader to_leader(const Communicator& comm, const std::vector<size_t>& follower_bytes) {
  const size_t world = static_cast<size_t>(comm.world());
  ToLeader t{std::vector<size_t>(world, 0), std::vector<size_t>(world, 0)};
  if (comm.rank() == 0) {
    for (size_t r = 1; r < world; ++r) t.recv[r] = follower_bytes[r];
  } else {
    t.send[0] = follower_bytes[static_cast<size_t>(comm.rank())];
  }
  return t;
}

std::vector<size_t> result_bytes(const StepMessage& m, int world, int64_t n_vocab) {
  const std::vector<int64_t> rows = per_rank(m, world, sequence_rows);
  std::vector<size_t> bytes(rows.size());
  for (size_t r = 0; r < rows.size(); ++r)
    bytes[r] = kCounterBytes + (m.host_logits ? size_t(rows[r]) * size_t(n_vocab) * sizeof(float) : 0);
  return bytes;
}

}  // namespace

int64_t sequence_rows(const StepSequence& s) { return s.all_logits ? static_cast<int64_t>(s.tokens.size()) : 1; }

std::vector<int64_t> tokens_per_rank(const StepMessage& m, int world) { return per_rank(m, world, sequence_tokens); }

void send_forward_results(Communicator& comm, const StepMessage& m, const ForwardOutput& out) {
  const int64_t rows = per_rank(m, comm.world(), sequence_rows)[static_cast<size_t>(comm.rank())];
  const size_t logit_floats = m.host_logits ? size_t(rows * out.n_vocab) : 0;
  if (out.logits.size() < logit_floats)
    throw CommError("rank " + std::to_string(comm.rank()) + ": the forward returned fewer logit rows than the step has");
  std::vector<uint8_t> payload(kCounterBytes + logit_floats * sizeof(float));
  const int64_t counters[2] = {out.unique_experts, out.weight_bytes_read};
  std::memcpy(payload.data(), counters, kCounterBytes);
  if (logit_floats > 0) std::memcpy(payload.data() + kCounterBytes, out.logits.data(), logit_floats * sizeof(float));
  std::vector<size_t> bytes(static_cast<size_t>(comm.world()), 0);
  bytes[static_cast<size_t>(comm.rank())] = payload.size();
  const ToLeader seg = to_leader(comm, bytes);
  comm.all_to_all_v(payload.data(), seg.send, nullptr, seg.recv, nullptr);
}

ForwardOutput gather_forward_results(Communicator& comm, const StepMessage& m, const ForwardOutput& local,
                                     int64_t n_vocab) {
  const int world = comm.world();
  const std::vector<size_t> bytes = result_bytes(m, world, n_vocab);
  const ToLeader seg = to_leader(comm, bytes);
  std::vector<uint8_t> recv;
  std::vector<size_t> offset(static_cast<size_t>(world), 0);  // each follower's segment in recv
  for (int r = 1; r < world; ++r) offset[size_t(r)] = recv.size(), recv.resize(recv.size() + seg.recv[size_t(r)]);
  comm.all_to_all_v(nullptr, seg.send, recv.data(), seg.recv, nullptr);

  ForwardOutput out;
  out.n_vocab = n_vocab;
  out.unique_experts = local.unique_experts;
  out.weight_bytes_read = local.weight_bytes_read;
  out.launch = local.launch;
  std::vector<const float*> next_row(static_cast<size_t>(world), nullptr);  // each rank's next logit row
  for (int r = 1; r < world; ++r) {
    int64_t counters[2];
    std::memcpy(counters, recv.data() + offset[size_t(r)], kCounterBytes);
    out.unique_experts += counters[0];
    out.weight_bytes_read += counters[1];
    next_row[size_t(r)] = reinterpret_cast<const float*>(recv.data() + offset[size_t(r)] + kCounterBytes);
  }
  next_row[0] = local.logits.data();
  int64_t row = 0;
  for (const StepSequence& s : m.sequences) {
    const int64_t n = sequence_rows(s);
    out.first_row.push_back(row);
    out.n_rows.push_back(n);
    row += n;
    if (!m.host_logits) continue;
    const float*& src = next_row[static_cast<size_t>(s.rank)];
    out.logits.insert(out.logits.end(), src, src + n * n_vocab);
    src += n * n_vocab;
  }
  return out;
}

void send_sampled_tokens(Communicator& comm, const std::vector<int32_t>& tokens) {
  std::vector<size_t> bytes(static_cast<size_t>(comm.world()), 0);
  bytes[static_cast<size_t>(comm.rank())] = tokens.size() * sizeof(int32_t);
  const ToLeader seg = to_leader(comm, bytes);
  comm.all_to_all_v(tokens.data(), seg.send, nullptr, seg.recv, nullptr);
}

std::vector<int32_t> gather_sampled_tokens(Communicator& comm, const StepMessage& m, const std::vector<int32_t>& local) {
  const size_t world = static_cast<size_t>(comm.world());
  std::vector<size_t> rows(world, 0);
  for (const SampleRow& s : m.samples) {
    if (s.rank < 0 || size_t(s.rank) >= world) throw CommError("sample row of rank " + std::to_string(s.rank));
    rows[size_t(s.rank)] += 1;
  }
  if (local.size() != rows[0]) throw CommError("rank 0 drew " + std::to_string(local.size()) + " tokens for " +
                                               std::to_string(rows[0]) + " rows");
  std::vector<size_t> bytes(world);
  for (size_t r = 0; r < world; ++r) bytes[r] = rows[r] * sizeof(int32_t);
  const ToLeader seg = to_leader(comm, bytes);
  std::vector<int32_t> recv;
  std::vector<size_t> next(world, 0);  // each rank's next token in recv (rank 0: in local)
  for (size_t r = 1; r < world; ++r) next[r] = recv.size(), recv.resize(recv.size() + rows[r]);
  comm.all_to_all_v(nullptr, seg.send, recv.data(), seg.recv, nullptr);
  std::vector<int32_t> tokens;
  tokens.reserve(m.samples.size());
  for (const SampleRow& s : m.samples) {
    const size_t r = static_cast<size_t>(s.rank);
    tokens.push_back(r == 0 ? local[next[0]++] : recv[next[r]++]);
  }
  return tokens;
}

}  // namespace ds4
