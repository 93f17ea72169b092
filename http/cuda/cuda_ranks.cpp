// Multi-GPU ds4serve roles (see cuda_ranks.h).
#include "http/cuda/cuda_ranks.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

#include "engine/load_error.h"
#include "engine/model.h"
#include "http/cuda/cuda_engine_factory.h"
#include "parallel/follower.h"
#include "parallel/id_exchange.h"
#include "parallel/launcher.h"

namespace ds4::http {
namespace {

std::atomic<bool> g_stop_ranks{false};
void on_stop_signal(int) { g_stop_ranks = true; }

std::string self_executable() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw LoadError("--gpus: cannot find this program's path (/proc/self/exe)");
  return std::string(buf, static_cast<size_t>(n));
}

// The command line without --gpus LIST / --gpus=LIST.
std::vector<std::string> without_gpus(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--gpus") {
      ++i;
      continue;
    }
    if (args[i].rfind("--gpus=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

}  // namespace

int run_gpu_launcher(const ParallelOptions& p, const std::vector<std::string>& args, int drain_timeout_s,
                     const RankLog& log) {
  std::vector<RankCommand> ranks = gpu_rank_commands(self_executable(), without_gpus(args), p.gpus, 1);
  const std::string id = nccl_id_to_hex(nccl_new_id());
  for (RankCommand& r : ranks) r.env.push_back({"DS4_NCCL_ID", id});
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  log("launching " + std::to_string(ranks.size()) + " ranks (one per GPU); rank 0 serves HTTP");
  const LaunchResult res = launch_ranks(ranks, std::chrono::seconds(drain_timeout_s + 10), &g_stop_ranks);
  if (res.ok) return 0;
  log(res.message);
  return res.first_failed_rank >= 0 ? 1 : 0;  // a requested stop is a clean exit
}

std::unique_ptr<NcclCommunicator> join_rank_group(const ParallelOptions& p) {
  const char* hex = std::getenv("DS4_NCCL_ID");
  try {  // the start-up (weights on every rank, then the pool agreement) may take long: 1 h limits
    NcclId id{};
    if (hex && *hex) {  // a child of --gpus
      id = nccl_id_from_hex(hex);
    } else if (p.rank == 0) {  // several hosts: rank 0 hands a new id to every other rank over --master
      id = nccl_new_id();
      serve_group_id(p.master, p.world, id, std::chrono::hours(1));
    } else {
      id = fetch_group_id(p.master, p.rank, std::chrono::hours(1));
    }
    return std::make_unique<NcclCommunicator>(id, p.rank, p.world, 0, std::chrono::hours(1));
  } catch (const CommError& e) {
    throw LoadError("rank " + std::to_string(p.rank) + " of " + std::to_string(p.world) + ": joining the GPU group: " + e.what());
  }
}

void run_follower_rank(const ServiceOptions& o, NcclCommunicator& comm, bool data_parallel, const RankLog& log) {
  const std::string me = "rank " + std::to_string(comm.rank()) + ": ";
  std::unique_ptr<Model> model = load_model(o.model_path);  // the config (and the weights unless synthetic)
  const bool synthetic = !o.synth_preset.empty();
  const ModelConfig config = synthetic ? preset_by_name(o.synth_preset) : model->config;
  DeviceEngineRequest r = device_engine_request(o, config, synthetic ? nullptr : &model->weights);
  r.log = [&](std::string_view line) { log(me + std::string(line)); };
  r.comm = &comm;
  r.data_parallel = data_parallel;
  DeviceEngine e = make_cuda_engine(r);
  log(me + e.description);
  comm.set_timeout(std::chrono::milliseconds(0));  // idle servers send no steps; a dead rank 0 still ends the wait
  Follower follower(comm, *e.backend, e.own_pool->layout(), e.own_pool->storage());
  const uint64_t steps = follower.run();
  log(me + "stopped by rank 0 after " + std::to_string(steps) + " steps");
}

}  // namespace ds4::http
