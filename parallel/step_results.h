// Step results of data-parallel attention (docs/PARALLEL.md section 7): each rank runs only its own
// sequences, so after a forward the followers return what rank 0's Engine needs -- their logit rows
// (only when the step asked for host logits) and their pass counters -- and after a kSample message
// the tokens they drew for their rows. One all_to_all_v each, data only towards rank 0; the sizes
// follow from the step message, so no count exchange is needed. Rows: one per sequence, or one per
// token for a sequence with all_logits, in the message's sequence order.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/forward.h"
#include "parallel/communicator.h"
#include "parallel/step_message.h"

namespace ds4 {

// Logit rows of one sequence of the message.
int64_t sequence_rows(const StepSequence& s);
// Tokens of each rank's sequences in a data-parallel forward message (ForwardBatch::rank_tokens).
// Throws CommError for a sequence whose rank is outside [0, world).
std::vector<int64_t> tokens_per_rank(const StepMessage& m, int world);

// Follower: sends its forward's counters and (m.host_logits) its logit rows to rank 0. Throws
// CommError when `out` does not hold the rows the message asks for, or the exchange fails.
void send_forward_results(Communicator& comm, const StepMessage& m, const ForwardOutput& out);

// Rank 0: the whole step's output in message order, from its own forward (`local`, the rank-0
// sequences of `m` in order) and what every follower sent: rows, logits (m.host_logits), the
// counters summed over ranks (each rank reads its own experts and its own copy of the dense weights).
ForwardOutput gather_forward_results(Communicator& comm, const StepMessage& m, const ForwardOutput& local,
                                     int64_t n_vocab);

// Follower: sends the tokens it drew for its rows of a kSample message to rank 0.
void send_sampled_tokens(Communicator& comm, const std::vector<int32_t>& tokens);

// Rank 0: one token per row of `m.samples` in order, from its own draws (`local`, its rows in order)
// and the followers'. Throws CommError when a rank sent the wrong number of tokens.
std::vector<int32_t> gather_sampled_tokens(Communicator& comm, const StepMessage& m, const std::vector<int32_t>& local);

}  // namespace ds4
