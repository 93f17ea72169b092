// StepGraphCache (cuda_step.h): capture of a step into a CUDA graph, instantiation, replay and
// least-recently-used eviction.
#include "engine/cuda/cuda_step.h"

#include "kernels/cuda/cuda_check.h"

namespace ds4 {

void StepGraphCache::replay(const Key& key, cudaStream_t stream, StepGraphStats& stats) {
  Entry& e = graphs_.at(key);
  e.last_use = ++clock_;
  ++stats.replays;
  DS4_CUDA_CHECK(cudaGraphLaunch(e.exec, stream));
}

void StepGraphCache::begin_capture(const Key& key, cudaStream_t stream) {
  capturing_ = key;
  capture_start_ = std::chrono::steady_clock::now();
  DS4_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
}

void StepGraphCache::end_capture(cudaStream_t stream, StepGraphStats& stats) {
  cudaGraph_t graph = nullptr;
  DS4_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  size_t nodes = 0;
  DS4_CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &nodes));
  Entry e;
  DS4_CUDA_CHECK(cudaGraphInstantiate(&e.exec, graph, 0));
  DS4_CUDA_CHECK(cudaGraphDestroy(graph));
  if (graphs_.size() >= kMaxGraphs) {
    auto oldest = graphs_.begin();
    for (auto i = graphs_.begin(); i != graphs_.end(); ++i)
      if (i->second.last_use < oldest->second.last_use) oldest = i;
    DS4_CUDA_CHECK(cudaGraphExecDestroy(oldest->second.exec));
    graphs_.erase(oldest);
  }
  e.last_use = ++clock_;
  graphs_[capturing_] = e;
  ++stats.captures;
  stats.last_nodes = static_cast<int64_t>(nodes);
  stats.last_capture_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - capture_start_).count();
  DS4_CUDA_CHECK(cudaGraphLaunch(e.exec, stream));
}

void StepGraphCache::clear() {
  for (auto& [key, e] : graphs_) cudaGraphExecDestroy(e.exec);  // not checked: may run at teardown
  graphs_.clear();
}

}  // namespace ds4
