// DpLeaderBackend (see dp_leader_backend.h).
#include "parallel/dp_leader_backend.h"

#include <stdexcept>
#include <string>

#include "parallel/leader_backend.h"
#include "parallel/step_message.h"
#include "parallel/step_results.h"

namespace ds4 {

DpLeaderBackend::DpLeaderBackend(Backend& local, Communicator& comm, RankKvPools& pools,
                                 std::vector<RecordingKvStorage*> recorders, int64_t n_vocab)
    : local_(local), comm_(comm), pools_(pools), recorders_(std::move(recorders)), n_vocab_(n_vocab) {
  if (comm.rank() != 0) throw std::invalid_argument("DpLeaderBackend runs on rank 0 only");
  if (pools.world() != comm.world() || recorders_.size() != size_t(comm.world()))
    throw std::invalid_argument("DpLeaderBackend: one pool and one recorder per rank");
  for (int r = 1; r < comm.world(); ++r)
    if (!recorders_[size_t(r)] || &pools.pool(r).manager().storage() != recorders_[size_t(r)])
      throw std::invalid_argument("DpLeaderBackend: recorder " + std::to_string(r) + " is not that rank's pool storage");
  if (n_vocab <= 0) throw std::invalid_argument("DpLeaderBackend: n_vocab must be positive");
}

DpLeaderBackend::DpLeaderBackend(std::unique_ptr<Backend> local, Communicator& comm, RankKvPools& pools,
                                 std::vector<RecordingKvStorage*> recorders, int64_t n_vocab)
    : DpLeaderBackend(*local, comm, pools, std::move(recorders), n_vocab) {
  owned_ = std::move(local);
}

DpLeaderBackend::~DpLeaderBackend() {
  try {
    stop();
  } catch (const std::exception&) {
    // the followers are gone already; nothing to tell them
  }
}

ForwardOutput DpLeaderBackend::forward(const ForwardBatch& batch) {
  StepMessage m;
  m.step = step_ + 1;
  m.host_logits = batch.host_logits;
  m.data_parallel = true;
  ForwardBatch own;  // rank 0's sequences, in batch order
  own.host_logits = batch.host_logits;
  std::vector<int32_t> row_ranks;
  for (const SequenceInput& in : batch.sequences) {
    const int rank = in.kv ? pools_.rank_of(*in.kv) : -1;
    if (rank < 0) throw std::invalid_argument("DpLeaderBackend: a sequence that is in no rank's pool");
    m.sequences.push_back(describe_sequence(pools_.pool(rank).manager(), in, rank));
    row_ranks.insert(row_ranks.end(), size_t(sequence_rows(m.sequences.back())), rank);
    if (rank == 0) own.sequences.push_back(in);
  }
  for (int r = 1; r < comm_.world(); ++r)  // after the reserves: they may initialise storage too
    for (KvOp& op : recorders_[size_t(r)]->take_ops()) {
      op.rank = r;
      m.ops.push_back(op);
    }
  own.rank_tokens = tokens_per_rank(m, comm_.world());
  send_step(comm_, m);
  ++step_;
  row_ranks_ = std::move(row_ranks);
  const ForwardOutput local = local_.forward(own);
  ForwardOutput out = gather_forward_results(comm_, m, local, n_vocab_);
  // The followers' sequences advanced on their ranks; their views here follow (the scheduler
  // publishes prefix blocks by these positions).
  for (size_t i = 0; i < batch.sequences.size(); ++i)
    if (m.sequences[i].rank != 0) batch.sequences[i].kv->set_num_tokens(m.sequences[i].start + int64_t(m.sequences[i].tokens.size()));
  return out;
}

std::vector<int32_t> DpLeaderBackend::sample_rows(std::span<const RowSampling> rows) {
  if (rows.size() != row_ranks_.size())
    throw std::invalid_argument("DpLeaderBackend: " + std::to_string(rows.size()) + " sample rows for a forward of " +
                                std::to_string(row_ranks_.size()));
  StepMessage m;
  m.kind = StepMessage::Kind::kSample;
  m.step = step_ + 1;
  m.data_parallel = true;
  std::vector<RowSampling> own;
  bool followers_have_rows = false;
  for (size_t i = 0; i < rows.size(); ++i) {
    m.samples.push_back({.rank = row_ranks_[i], .sampling = rows[i]});
    if (row_ranks_[i] == 0) own.push_back(rows[i]);
    followers_have_rows = followers_have_rows || row_ranks_[i] != 0;
  }
  if (followers_have_rows) {
    send_step(comm_, m);
    ++step_;
  }
  const std::vector<int32_t> local = own.empty() ? std::vector<int32_t>{} : local_.sample_rows(own);
  return followers_have_rows ? gather_sampled_tokens(comm_, m, local) : local;
}

void DpLeaderBackend::stop() {
  if (stopped_) return;
  stopped_ = true;
  send_stop(comm_, step_ + 1);
}

}  // namespace ds4
