// Follower (see follower.h).
#include "parallel/follower.h"

#include <stdexcept>

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

void Follower::apply_all(const std::vector<KvOp>& ops) {
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
  if (m.kind == StepMessage::Kind::kStop) return false;
  if (m.kind == StepMessage::Kind::kOps) return true;
  ForwardBatch batch;
  batch.host_logits = m.host_logits;
  for (const StepSequence& s : m.sequences) {
    if (s.slot >= layout_.num_slots) throw CommError("step message: slot outside the pool");
    MirrorSequenceKv& kv = slot_view(s.slot);
    try {
      kv.assign(s.blocks, s.start);
    } catch (const std::invalid_argument& e) {
      throw CommError(e.what());
    }
    batch.sequences.push_back({&kv, s.tokens, s.all_logits, s.speculative});
  }
  backend_.forward(batch);
  return true;
}

uint64_t Follower::run() {
  uint64_t forwards = 0;
  while (step()) ++forwards;
  return forwards;
}

}  // namespace ds4
