// ds4serve: the OpenAI-compatible server. Start-up order: parse options, listen (so /health
// answers 503 while loading), load the model with progress, publish it, print the URL; then wait
// for SIGINT / SIGTERM and drain: stop accepting, let in-flight requests finish up to the drain
// timeout, abort the rest, exit 0. Exit 1 with a message on a bad option or a load failure.
// Several GPUs (docs/PARALLEL.md, CUDA + NCCL builds): --gpus launches one ds4serve per GPU and
// supervises them; a child with --rank 0 serves as above through the rank group, the others run
// the follower loop (http/cuda/cuda_ranks.h).
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "engine/load_error.h"
#include "http/http_server.h"
#include "http/model_service.h"
#ifdef DS4SERVE_HAVE_CUDA
#include "http/cuda/cuda_engine_factory.h"
#endif
#ifdef DS4SERVE_HAVE_NCCL
#include "http/cuda/cuda_ranks.h"
#endif

namespace {

using namespace ds4::http;

void log_line(std::string_view line) {
  std::string s = "ds4serve: ";
  s += line;
  s += '\n';
  std::fwrite(s.data(), 1, s.size(), stderr);
}

// Blocks SIGINT / SIGTERM in this thread and every thread started after it, so that only
// sigwait() in main sees them (no asynchronous signal handler).
sigset_t block_shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that vanished must not kill the server
  return set;
}

int serve(const ServerOptions& options) {
  const sigset_t signals = block_shutdown_signals();
  HttpServer server(options);
  server.start();
  const std::string url = "http://" + options.host + ":" + std::to_string(server.port());
  log_line("listening on " + url + " (loading the model; /health answers 503 until it is ready)");
  auto service = ModelService::load(options.service, log_line);
  server.set_service(service.get());
  log_line("serving model '" + service->served_name() + "' at " + url + "/v1  (try: curl " + url + "/v1/models)");

  int sig = 0;
  sigwait(&signals, &sig);
  log_line(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + ": draining (up to " +
           std::to_string(options.limits.drain_timeout_seconds) + " s)");
  const int left = server.drain();
  if (left > 0) log_line("drain timeout: aborting " + std::to_string(left) + " request(s)");
  service->stop();  // remaining requests finish with "abort"
  for (int i = 0; i < 100 && server.state().in_flight.load() > 0; ++i)  // let them send their last chunk
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  server.stop();
  log_line("stopped");
  return 0;
}

#ifdef DS4SERVE_HAVE_NCCL
constexpr bool kNcclBuild = true;

// --gpus: the launcher; --rank R: rank 0 serves through the group, the others follow.
int serve_ranks(ServerOptions options, const std::vector<std::string>& args) {
  if (!options.parallel.gpus.empty())
    return run_gpu_launcher(options.parallel, args, options.limits.drain_timeout_seconds, log_line);
  std::unique_ptr<ds4::NcclCommunicator> comm = join_rank_group(options.parallel);
  if (comm->rank() > 0) {
    run_follower_rank(options.service, *comm, options.parallel.data_parallel, log_line);
    return 0;
  }
  options.service.device_factory = [c = comm.get(), dp = options.parallel.data_parallel](const DeviceEngineRequest& request) {
    DeviceEngineRequest r = request;
    r.comm = c;
    r.data_parallel = dp;
    DeviceEngine e = make_cuda_engine(r);
    c->set_timeout(std::chrono::minutes(5));  // loaded everywhere: a step's collective never takes that long
    return e;
  };
  return serve(options);
}
#else
constexpr bool kNcclBuild = false;
int serve_ranks(ServerOptions, const std::vector<std::string>&) { return 1; }  // refused before
#endif

}  // namespace

int main(int argc, char** argv) {
  try {
    bool help = false;
    const std::vector<std::string> args(argv + 1, argv + argc);
    ServerOptions options = parse_server_options(args, DS4_DEMO_MODEL_PATH, help);
#ifdef DS4SERVE_HAVE_CUDA
    options.service.device_factory = ds4::http::make_cuda_engine;  // --backend cuda
#endif
    if (help) {
      std::fputs(kServerUsage, stdout);
      std::fputs(kHardeningUsage, stdout);
      std::fputs(kParallelUsage, stdout);
      return 0;
    }
    if (options.parallel.any()) {
      const std::string refusal = parallel_serving_refusal(options.parallel, options.service, kNcclBuild);
      if (!refusal.empty()) throw ds4::LoadError(refusal);
      return serve_ranks(options, args);
    }
    return serve(options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ds4serve: error: %s\n", e.what());
    return 1;
  }
}
