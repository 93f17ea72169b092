// Multi-GPU ds4serve (docs/PARALLEL.md section 1), CUDA builds with NCCL only: the --gpus launcher
// (one child ds4serve per GPU, supervised), joining the NCCL group of an explicit rank, and the
// follower role of ranks > 0 (their part of the model, rank 0's KV pool, the step loop). Rank 0
// serves through ModelService with make_cuda_engine given the communicator. Called by http/main.cpp.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/model_service.h"
#include "http/parallel_options.h"
#include "parallel/nccl_communicator.h"

namespace ds4::http {

using RankLog = std::function<void(std::string_view)>;

// --gpus: runs `args` (the command line without --gpus) once per GPU with --rank/--world/--master
// added, CUDA_VISIBLE_DEVICES and NCCL_NVLS_ENABLE=0 set and a new NCCL id in DS4_NCCL_ID; stops
// them all when one fails or when this process gets SIGTERM/SIGINT. Returns the exit status.
int run_gpu_launcher(const ParallelOptions& p, const std::vector<std::string>& args, int drain_timeout_s,
                     const RankLog& log);

// --rank R --world W: joins the group with the id the launcher put in DS4_NCCL_ID, or else (ranks
// on several hosts) the id rank 0 hands out over --master (parallel/id_exchange.h). The GPU is
// device 0 of what CUDA_VISIBLE_DEVICES shows. Throws LoadError naming the problem.
std::unique_ptr<NcclCommunicator> join_rank_group(const ParallelOptions& p);

// A rank > 0: loads (or generates) its part of the model like ModelService, builds rank 0's pool
// (replicated attention) or its own (data_parallel), then runs the leader's steps until rank 0
// stops. Throws on failure.
void run_follower_rank(const ServiceOptions& options, NcclCommunicator& comm, bool data_parallel, const RankLog& log);

}  // namespace ds4::http
