// State of CudaBackend's step driver beyond the plan and the scratch arena: which fast paths are
// on (fused ops, CUDA graphs), the device buffers the fused kernels keep between launches, and
// the cache of instantiated CUDA graphs of whole decode steps. A graph is captured the first time
// a step shape is seen and replayed after that; the shape key holds every host-side value the
// step's launches depend on (token / sequence / logit-row counts, bucketed row bounds, buffer
// addresses), everything else the kernels read from device memory (positions, block tables,
// emissions, selections). Owned by CudaBackend (one thread).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <chrono>
#include <map>
#include <vector>

#include "kernels/cuda/device_buffer.h"

namespace ds4 {

struct StepGraphStats {
  int64_t captures = 0;       // graphs captured and instantiated
  int64_t replays = 0;        // steps run by replaying a cached graph
  int64_t eager_steps = 0;    // steps launched kernel by kernel
  int64_t last_nodes = 0;     // kernel nodes of the last captured graph
  double last_capture_ms = 0; // host time of the last capture + instantiation
};

class StepGraphCache {
 public:
  using Key = std::vector<int64_t>;
  StepGraphCache() = default;
  StepGraphCache(const StepGraphCache&) = delete;
  StepGraphCache& operator=(const StepGraphCache&) = delete;
  ~StepGraphCache() { clear(); }

  bool contains(const Key& key) const { return graphs_.count(key) > 0; }
  // Launches the graph cached for key on stream.
  void replay(const Key& key, cudaStream_t stream, StepGraphStats& stats);
  // Starts capturing stream's launches for key; end_capture instantiates them (evicting the least
  // recently used graph beyond kMaxGraphs) and launches the new graph.
  void begin_capture(const Key& key, cudaStream_t stream);
  void end_capture(cudaStream_t stream, StepGraphStats& stats);
  void clear();
  size_t size() const { return graphs_.size(); }

  static constexpr size_t kMaxGraphs = 24;

 private:
  struct Entry {
    cudaGraphExec_t exec = nullptr;
    uint64_t last_use = 0;
  };
  std::map<Key, Entry> graphs_;
  uint64_t clock_ = 0;
  Key capturing_;
  std::chrono::steady_clock::time_point capture_start_;
};

struct StepState {
  bool fused_ops = true;
  bool cuda_graphs = true;
  bool pad_plan = false;               // this step's plan is laid out for a replayable graph
  enum class PendingPost { kNone, kAttention, kMoe } pending = PendingPost::kNone;
  cuda::DeviceBuffer hc_partial;       // [T, chunks, 1 + mix] f64 partial sums of hc_boundary
  cuda::DeviceBuffer route_counter;    // int32 block counter of route_and_group (kept 0)
  cuda::DeviceBuffer attn_ws;          // attention_split workspace: f32 partial sums, then f64 (max, den)
  size_t attn_ws_ml_offset = 0;
  StepGraphCache graphs;
  StepGraphStats stats;
  const void* graph_arena = nullptr;   // buffers the cached graphs point into
  const void* graph_plan = nullptr;
  const void* graph_partial = nullptr;
  const void* graph_attn = nullptr;
};

}  // namespace ds4
