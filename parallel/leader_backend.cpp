// LeaderBackend (see leader_backend.h).
#include "parallel/leader_backend.h"

#include <stdexcept>

namespace ds4 {

LeaderBackend::LeaderBackend(Backend& local, Communicator& comm, KvCacheManager& manager, RecordingKvStorage& recorder)
    : local_(local), comm_(comm), manager_(manager), recorder_(recorder) {
  if (comm.rank() != 0) throw std::invalid_argument("LeaderBackend runs on rank 0 only");
  if (&manager.storage() != &recorder) throw std::invalid_argument("LeaderBackend: the recorder must be the pool's storage");
}

LeaderBackend::LeaderBackend(std::unique_ptr<Backend> local, Communicator& comm, KvCacheManager& manager,
                             RecordingKvStorage& recorder)
    : LeaderBackend(*local, comm, manager, recorder) {
  owned_ = std::move(local);
}

LeaderBackend::~LeaderBackend() {
  try {
    stop();
  } catch (const std::exception&) {
    // the followers are gone already; nothing to tell them
  }
}

StepSequence describe_sequence(KvCacheManager& manager, const SequenceInput& in, int32_t rank) {
  const std::optional<KvSeqId> id = in.kv ? manager.id_of(*in.kv) : std::nullopt;
  if (!id || in.tokens.empty()) throw std::invalid_argument("LeaderBackend: a sequence that is not a view of the pool");
  const int64_t start = in.kv->num_tokens();
  // Blocks the local forward would reserve must be in the table the followers get.
  if (!in.kv->reserve(start + static_cast<int64_t>(in.tokens.size())))
    throw std::invalid_argument("LeaderBackend: KV reserve failed");
  const std::span<const int32_t> blocks = manager.block_table(*id);
  return {.slot = manager.slot(*id), .start = start, .blocks = {blocks.begin(), blocks.end()},
          .tokens = {in.tokens.begin(), in.tokens.end()}, .all_logits = in.all_logits, .speculative = in.speculative,
          .rank = rank};
}

void send_stop(Communicator& comm, uint64_t step) {
  StepMessage m;
  m.kind = StepMessage::Kind::kStop;
  m.step = step;
  send_step(comm, m);
}

ForwardOutput LeaderBackend::forward(const ForwardBatch& batch) {
  StepMessage m;
  m.step = step_ + 1;
  m.host_logits = batch.host_logits;
  for (const SequenceInput& in : batch.sequences) m.sequences.push_back(describe_sequence(manager_, in, kAllRanks));
  m.ops = recorder_.take_ops();  // after the reserves: they may initialise storage too
  send_step(comm_, m);
  ++step_;
  return local_.forward(batch);
}

void LeaderBackend::rollback(SequenceKv& kv, int64_t num_tokens) {
  const RollbackTo one{&kv, num_tokens};
  rollback_all(std::span(&one, 1));
}

void LeaderBackend::rollback_all(std::span<const RollbackTo> rollbacks) {
  for (const RollbackTo& r : rollbacks) {
    const std::optional<KvSeqId> id = r.kv ? manager_.id_of(*r.kv) : std::nullopt;
    if (!id) throw std::invalid_argument("LeaderBackend: rollback of a sequence that is not a view of the pool");
    recorder_.record_rollback(manager_.slot(*id), r.num_tokens);
  }
  StepMessage m;
  m.kind = StepMessage::Kind::kOps;
  m.step = step_ + 1;
  m.ops = recorder_.take_ops();
  send_step(comm_, m);
  ++step_;
  local_.rollback_all(rollbacks);
}

void LeaderBackend::stop() {
  if (stopped_) return;
  stopped_ = true;
  send_stop(comm_, step_ + 1);
}

}  // namespace ds4
