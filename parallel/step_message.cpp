// StepMessage encoding (see step_message.h): a fixed header, the ops, the sequences, the sample
// rows; every count checked against the bytes left before anything is allocated.
#include "parallel/step_message.h"

#include <cstring>

namespace ds4 {
namespace {

constexpr uint32_t kMagic = 0x50455344;  // "DSEP"
constexpr uint16_t kVersion = 2;  // 2: ranks of operations and sequences, kSample
constexpr size_t kMaxMessageBytes = size_t(1) << 32;

class Writer {
 public:
  template <typename T>
  void put(T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));  // the hosts are little-endian (x86-64, aarch64)
    bytes_.insert(bytes_.end(), b, b + sizeof(T));
  }
  void put_ints(const std::vector<int32_t>& v) {
    put<uint32_t>(static_cast<uint32_t>(v.size()));
    for (int32_t x : v) put(x);
  }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  template <typename T>
  bool get(T& v) {
    if (b_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  // A count of items of item_bytes each that the remaining bytes can hold.
  bool get_count(uint32_t& n, size_t item_bytes) { return get(n) && size_t(n) * item_bytes <= b_.size() - pos_; }
  bool get_ints(std::vector<int32_t>& v) {
    uint32_t n = 0;
    if (!get_count(n, sizeof(int32_t))) return false;
    v.resize(n);
    for (auto& x : v) get(x);
    return true;
  }
  bool done() const { return pos_ == b_.size(); }

 private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

void put_op(Writer& w, const KvOp& op) {
  w.put(static_cast<uint8_t>(op.kind));
  w.put(op.region);
  w.put(op.offset);
  w.put(op.src_region);
  w.put(op.src_offset);
  w.put(op.size);
  w.put(op.value);
  w.put(op.rank);
}

constexpr size_t kOpBytes = 1 + 4 + 8 + 4 + 8 + 8 + 4 + 4;
constexpr size_t kSequenceHeaderBytes = 8 + 8 + 1 + 4 + 4 + 4;
constexpr size_t kSampleBytes = 4 + 4 + 4 + 4 + 4 + 8 + 8;

std::string get_op(Reader& r, KvOp& op) {
  uint8_t kind = 0;
  if (!(r.get(kind) && r.get(op.region) && r.get(op.offset) && r.get(op.src_region) && r.get(op.src_offset) &&
        r.get(op.size) && r.get(op.value) && r.get(op.rank)))
    return "truncated KV operation";
  if (kind < 1 || kind > 3) return "unknown KV operation kind " + std::to_string(kind);
  op.kind = static_cast<KvOp::Kind>(kind);
  if (op.offset < 0 || op.src_offset < 0 || op.size < 0 || op.region < 0 || op.src_region < 0 || op.rank < kAllRanks)
    return "negative field in a KV operation";
  return "";
}

std::string get_sequence(Reader& r, StepSequence& s) {
  uint8_t flags = 0;
  if (!(r.get(s.slot) && r.get(s.start) && r.get(flags) && r.get(s.rank))) return "truncated sequence header";
  if (flags > 3) return "unknown sequence flags " + std::to_string(flags);
  s.all_logits = flags & 1;
  s.speculative = flags & 2;
  if (!r.get_ints(s.blocks) || !r.get_ints(s.tokens)) return "truncated block table or tokens";
  if (s.slot < 0 || s.start < 0 || s.rank < kAllRanks) return "negative slot, start position or rank";
  if (s.tokens.empty()) return "a sequence without tokens";
  return "";
}

void put_sample(Writer& w, const SampleRow& row) {
  const SamplingParams& p = row.sampling.params;
  w.put(row.rank);
  w.put(p.temperature);
  w.put(p.top_p);
  w.put(p.min_p);
  w.put<int32_t>(p.top_k);
  w.put(p.seed);
  w.put(row.sampling.step);
}

std::string get_sample(Reader& r, SampleRow& row) {
  SamplingParams& p = row.sampling.params;
  int32_t top_k = 0;
  if (!(r.get(row.rank) && r.get(p.temperature) && r.get(p.top_p) && r.get(p.min_p) && r.get(top_k) && r.get(p.seed) &&
        r.get(row.sampling.step)))
    return "truncated sample row";
  p.top_k = top_k;
  if (row.rank < 0) return "a sample row without its rank";
  return "";
}

// Every operation and sequence has a rank in a data-parallel step and none in a replicated one.
std::string check_ranks(const StepMessage& m) {
  for (const KvOp& op : m.ops)
    if ((op.rank == kAllRanks) == m.data_parallel) return "a KV operation's rank does not match the step's mode";
  for (const StepSequence& s : m.sequences)
    if ((s.rank == kAllRanks) == m.data_parallel) return "a sequence's rank does not match the step's mode";
  if (m.kind == StepMessage::Kind::kSample && (!m.data_parallel || m.samples.empty()))
    return "a sample step that is not data-parallel or has no rows";
  if (m.kind != StepMessage::Kind::kSample && !m.samples.empty()) return "sample rows outside a sample step";
  return "";
}

}  // namespace

std::vector<uint8_t> encode_step_message(const StepMessage& m) {
  Writer w;
  w.put(kMagic);
  w.put(kVersion);
  w.put(static_cast<uint8_t>(m.kind));
  w.put<uint8_t>(uint8_t(m.host_logits) | uint8_t(m.data_parallel) << 1);
  w.put(m.step);
  w.put<uint32_t>(static_cast<uint32_t>(m.ops.size()));
  for (const KvOp& op : m.ops) put_op(w, op);
  w.put<uint32_t>(static_cast<uint32_t>(m.sequences.size()));
  for (const StepSequence& s : m.sequences) {
    w.put(s.slot);
    w.put(s.start);
    w.put<uint8_t>(uint8_t(s.all_logits) | uint8_t(s.speculative) << 1);
    w.put(s.rank);
    w.put_ints(s.blocks);
    w.put_ints(s.tokens);
  }
  w.put<uint32_t>(static_cast<uint32_t>(m.samples.size()));
  for (const SampleRow& row : m.samples) put_sample(w, row);
  return w.take();
}

std::string decode_step_message(std::span<const uint8_t> bytes, StepMessage& m) {
  Reader r(bytes);
  uint32_t magic = 0;
  uint16_t version = 0;
  uint8_t kind = 0, flags = 0;
  if (!r.get(magic) || magic != kMagic) return "not a step message (bad magic)";
  if (!r.get(version) || version != kVersion)
    return "step message version " + std::to_string(version) + ", expected " + std::to_string(kVersion);
  if (!(r.get(kind) && r.get(flags) && r.get(m.step))) return "truncated header";
  if (kind < 1 || kind > 4 || flags > 3) return "bad message kind or flags";
  m.kind = static_cast<StepMessage::Kind>(kind);
  m.host_logits = flags & 1;
  m.data_parallel = flags & 2;
  uint32_t n = 0;
  if (!r.get_count(n, kOpBytes)) return "truncated KV operation list";
  m.ops.resize(n);
  for (KvOp& op : m.ops)
    if (std::string e = get_op(r, op); !e.empty()) return e;
  if (!r.get_count(n, kSequenceHeaderBytes)) return "truncated sequence list";
  m.sequences.resize(n);
  for (StepSequence& s : m.sequences)
    if (std::string e = get_sequence(r, s); !e.empty()) return e;
  if (!r.get_count(n, kSampleBytes)) return "truncated sample row list";
  m.samples.resize(n);
  for (SampleRow& row : m.samples)
    if (std::string e = get_sample(r, row); !e.empty()) return e;
  if (!r.done()) return "trailing bytes after the message";
  if (m.kind == StepMessage::Kind::kForward && m.sequences.empty()) return "a forward step without sequences";
  return check_ranks(m);
}

void send_step(Communicator& comm, const StepMessage& message) {
  std::vector<uint8_t> bytes = encode_step_message(message);
  uint64_t size = bytes.size();
  comm.broadcast(&size, sizeof(size), 0);
  comm.broadcast(bytes.data(), bytes.size(), 0);
}

StepMessage receive_step(Communicator& comm) {
  uint64_t size = 0;
  comm.broadcast(&size, sizeof(size), 0);
  if (size == 0 || size > kMaxMessageBytes) throw CommError("step message of " + std::to_string(size) + " bytes");
  std::vector<uint8_t> bytes(size);
  comm.broadcast(bytes.data(), bytes.size(), 0);
  StepMessage m;
  if (std::string e = decode_step_message(bytes, m); !e.empty()) throw CommError("rank " + std::to_string(comm.rank()) + ": " + e);
  return m;
}

}  // namespace ds4
