// ds4serve's multi-GPU options (docs/PARALLEL.md section 1): --gpus LIST (one rank per GPU of this
// host, launched by ds4serve) or --rank R --world W --master HOST:PORT (one process per GPU on
// several hosts, NCCL bootstrap through rank 0). Parsed and checked with errors naming the option
// (check_parallel_options, http/server_options.cpp); what this build cannot serve is refused with a
// message saying so (parallel_serving_refusal, http/main.cpp).
#pragma once
#include <string>

#include "http/model_service.h"
#include <vector>

namespace ds4::http {

struct ParallelOptions {
  std::vector<int> gpus;  // --gpus: CUDA device ids, distinct
  int rank = -1;          // --rank (-1: not given)
  int world = 0;          // --world (0: not given)
  std::string master;     // --master HOST:PORT
  // --attention replicated|dp: every rank runs every sequence's attention (default), or each rank
  // its own sequences with their KV on it only (data-parallel, docs/PARALLEL.md section 3).
  bool data_parallel = false;
  bool attention_given = false;
  bool any() const { return !gpus.empty() || rank >= 0 || world > 0 || !master.empty(); }
};

extern const char* const kParallelUsage;

// Applies a value option of this group; false when `opt` is not one of them. Throws LoadError.
bool apply_parallel_option(ParallelOptions& p, const std::string& opt, const std::string& value);
// Checks the combination (after every option is read): --gpus excludes the explicit form, the
// explicit form needs all three, rank < world, both need --backend cuda, and --attention needs one
// of them. Throws LoadError.
void check_parallel_options(const ParallelOptions& p, const std::string& backend);

// Why this ds4serve cannot serve the requested ranks ("" when it can): a build without CUDA and
// NCCL, or --mtp with data-parallel attention.
std::string parallel_serving_refusal(const ParallelOptions& p, const ServiceOptions& service, bool nccl_build);

}  // namespace ds4::http
