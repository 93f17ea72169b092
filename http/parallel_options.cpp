// Multi-GPU options of ds4serve (see parallel_options.h).
#include "http/parallel_options.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "engine/load_error.h"

namespace ds4::http {

const char* const kParallelUsage =
    "multi-GPU (expert parallelism over NCCL, docs/PARALLEL.md; CUDA builds with NCCL):\n"
    "  --gpus LIST               one rank per listed CUDA device of this host (e.g. 0,1,2,3)\n"
    "  --rank R, --world W       this process's rank of W (one process per GPU, several hosts)\n"
    "  --master HOST:PORT        where rank 0 listens for the other ranks (with --rank / --world)\n"
    "  --attention MODE          replicated (default: every rank runs every sequence's attention) or dp\n"
    "                            (data-parallel: each rank its own sequences, KV pools add up)\n";

namespace {

int parse_count(const std::string& opt, const std::string& v, int lo, int hi) {
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || errno || x < lo || x > hi)
    throw LoadError(opt + ": '" + v + "' is not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(x);
}

std::vector<int> parse_gpu_list(const std::string& v) {
  std::vector<int> gpus;
  size_t start = 0;
  while (start <= v.size()) {
    const size_t comma = std::min(v.find(',', start), v.size());
    const int id = parse_count("--gpus", v.substr(start, comma - start), 0, 1023);
    if (std::find(gpus.begin(), gpus.end(), id) != gpus.end())
      throw LoadError("--gpus: GPU " + std::to_string(id) + " is listed twice");
    gpus.push_back(id);
    start = comma + 1;
  }
  return gpus;
}

void check_master(const std::string& v) {
  const size_t colon = v.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw LoadError("--master: '" + v + "' is not HOST:PORT");
  parse_count("--master", v.substr(colon + 1), 1, 65535);
}

}  // namespace

bool apply_parallel_option(ParallelOptions& p, const std::string& opt, const std::string& v) {
  if (opt == "--gpus") p.gpus = parse_gpu_list(v);
  else if (opt == "--rank") p.rank = parse_count(opt, v, 0, 65535);
  else if (opt == "--world") p.world = parse_count(opt, v, 1, 65536);
  else if (opt == "--master") check_master(v), p.master = v;
  else if (opt == "--attention") {
    if (v != "replicated" && v != "dp") throw LoadError("--attention: '" + v + "' is not replicated or dp");
    p.data_parallel = v == "dp", p.attention_given = true;
  } else return false;
  return true;
}

void check_parallel_options(const ParallelOptions& p, const std::string& backend) {
  if (!p.any()) {
    if (p.attention_given) throw LoadError("--attention places attention across GPUs: it needs --gpus or --rank / --world");
    return;
  }
  const bool explicit_form = p.rank >= 0 || p.world > 0 || !p.master.empty();
  if (!p.gpus.empty() && explicit_form)
    throw LoadError("--gpus launches the ranks of this host itself: it cannot be combined with --rank / --world / --master");
  if (explicit_form && (p.rank < 0 || p.world < 1 || p.master.empty()))
    throw LoadError("--rank, --world and --master go together (one process per GPU; rank 0 listens on --master)");
  if (explicit_form && p.rank >= p.world)
    throw LoadError("--rank " + std::to_string(p.rank) + " is not below --world " + std::to_string(p.world));
  if (backend != "cuda") throw LoadError("--gpus / --rank / --world run one rank per GPU: they need --backend cuda");
}

std::string parallel_serving_refusal(const ParallelOptions& p, const ServiceOptions& service, bool nccl_build) {
  if (!p.any()) return "";
  if (!nccl_build)
    return "--gpus / --rank: serving on several GPUs needs a ds4serve built with CUDA and NCCL (this one has not both)";
  if (p.data_parallel && !service.mtp_path.empty())
    return "--mtp with data-parallel attention (--attention dp) is not implemented yet; --attention replicated supports it";
  return "";
}

}  // namespace ds4::http
