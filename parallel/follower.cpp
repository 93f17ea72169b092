// Follower (see follower.h).
#include "parallel/follower.h"

#include <stdexcept>

#include "parallel/step_results.h"

namespace ds4 {

Follower::Follower(Communicator& comm, Backend& backend, const KvPoolLayout& layout, KvStorage& storage)
    : comm_(comm), backend_(backend), layout_(layout), storage_(storage) {
  if (comm.rank() == 0) throw std::invalid_argument("Follower runs on ranks > 0 only");
}

MirrorSequenceKv& Follower::slot_view(int64_t slot) {
  auto& view = slots_[slot];
  if (!view) view = std::make_unique<MirrorSequenceKv>(layout_, storage_, slot);
  return *view;
}

void Follower::check_range(int region, int64_t offset, int64_t bytes) const {
  if (region < 0 || region >= layout_.num_regions() || offset < 0 || bytes < 0 || offset + bytes > layout_.region_bytes(region))
    throw CommError("step " + std::to_string(step_) + ": KV operation outside the pool (region " + std::to_string(region) +
                    ", offset " + std::to_string(offset) + ", " + std::to_string(bytes) + " bytes)");
}

void Follower::apply(const KvOp& op) {
  switch (op.kind) {
    case KvOp::Kind::kCopy:
      check_range(op.region, op.offset, op.size);
      check_range(op.src_region, op.src_offset, op.size);
      storage_.copy(op.region, op.offset, op.src_region, op.src_offset, op.size);
      break;
    case KvOp::Kind::kFill:
      check_range(op.region, op.offset, op.size * int64_t(sizeof(float)));
      storage_.fill_f32(op.region, op.offset, op.size, op.value);
      break;
    case KvOp::Kind::kRollback:
      if (op.offset >= layout_.num_slots) throw CommError("rollback of a slot outside the pool");
      backend_.rollback(slot_view(op.offset), op.size);
      break;
  }
}

void Follower::apply_all(const std::vector<KvOp>& all_ops) {
  std::vector<KvOp> ops;  // this rank's
  for (const KvOp& op : all_ops)
    if (mine(op.rank)) ops.push_back(op);
  for (size_t i = 0; i < ops.size();) {
    if (ops[i].kind != KvOp::Kind::kRollback) {
      apply(ops[i++]);
      continue;
    }
    std::vector<Backend::RollbackTo> run;  // as the leader's rollback_all() got them
    for (; i < ops.size() && ops[i].kind == KvOp::Kind::kRollback; ++i) {
      if (ops[i].offset >= layout_.num_slots) throw CommError("rollback of a slot outside the pool");
      run.push_back({&slot_view(ops[i].offset), ops[i].size});
    }
    backend_.rollback_all(run);
  }
}

bool Follower::step() {
  const StepMessage m = receive_step(comm_);
  if (m.step != step_ + 1)
    throw CommError("rank " + std::to_string(comm_.rank()) + ": step message " + std::to_string(m.step) + " after step " +
                    std::to_string(step_) + " (ranks out of step)");
  step_ = m.step;
  apply_all(m.ops);
  switch (m.kind) {
    case StepMessage::Kind::kStop:
      return false;
    case StepMessage::Kind::kOps:
      return true;
    case StepMessage::Kind::kSample:
      sample(m);
      return true;
    case StepMessage::Kind::kForward:
      forward(m);
      return true;
  }
  return true;
}

void Follower::forward(const StepMessage& m) {
  ForwardBatch batch;
  batch.host_logits = m.host_logits;
  for (const StepSequence& s : m.sequences) {
    if (!mine(s.rank)) continue;
    if (s.slot >= layout_.num_slots) throw CommError("step message: slot outside the pool");
    MirrorSequenceKv& kv = slot_view(s.slot);
    try {
      kv.assign(s.blocks, s.start);
    } catch (const std::invalid_argument& e) {
      throw CommError(e.what());
    }
    batch.sequences.push_back({&kv, s.tokens, s.all_logits, s.speculative});
  }
  if (m.data_parallel) batch.rank_tokens = tokens_per_rank(m, comm_.world());
  const ForwardOutput out = backend_.forward(batch);  // data-parallel: possibly no sequence of ours
  sequences_run_ += batch.sequences.size();
  if (m.data_parallel) send_forward_results(comm_, m, out);
}

void Follower::sample(const StepMessage& m) {
  std::vector<RowSampling> rows;
  for (const SampleRow& row : m.samples)
    if (row.rank == comm_.rank()) rows.push_back(row.sampling);
  const std::vector<int32_t> tokens = rows.empty() ? std::vector<int32_t>{} : backend_.sample_rows(rows);
  if (tokens.size() != rows.size()) throw CommError("rank " + std::to_string(comm_.rank()) + ": the sampler drew the wrong number of tokens");
  send_sampled_tokens(comm_, tokens);
}

uint64_t Follower::run() {
  uint64_t forwards = 0;
  while (step()) ++forwards;
  return forwards;
}

}  // namespace ds4
