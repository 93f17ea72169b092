// The issue-10 measurement of cuda_model_bench (--sweep): decode step time for every batch size at
// every context, and prefill chunks at given depths, on one CudaBackend with its own KV pool.
// The KV is filled to the context by moving each sequence's position there without a prefill
// (its rows hold zeros): the kernels read exactly as many rows as after a real prefill, so the
// step time is the same, while a real 16K prefill of 256 sequences would take hours today.
// Weight bytes per step are the forward pass's own count (ForwardOutput::weight_bytes_read: dense
// weights once, the step's actual expert union, embedding rows). Writes decode.csv and prefill.csv.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/cuda/cuda_backend.h"

namespace ds4 {

struct SweepOptions {
  std::vector<int> contexts = {4096, 16384};
  std::vector<int> batches = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  int steps = 5;                  // timed decode steps per point (after one warm-up step)
  double point_time_s = 30;       // stop timing a point after this long (at least one step)
  double time_limit_s = 300;      // points not started by then are written as skipped
  std::vector<int> prefill_depths = {0, 16384};
  int prefill_chunk = 2048;
  int prefill_reps = 2;           // timed chunks per depth (fewer when over point_time_s)
  std::string out_dir = ".";
  double copy_peak_gbs = 0;       // measured device-to-device copy (read + write)
  uint64_t seed = 7;
};

// The largest batch × context the backend's pool can hold is what it was built with; points that
// do not fit are written with status "no_fit". Returns the number of points measured.
int run_sweep(CudaBackend& gpu, const ModelConfig& config, const SweepOptions& options);

// DS4_PROFILE_STEP=1 asks for one extra step per point between cudaProfilerStart and
// cudaProfilerStop, for `ncu --profile-from-start off` (scripts/h200_profile.sh; the table comes from
// scripts/ncu_kernel_table.py). Off by default; the points' timings never include that step.
bool profile_step_wanted();
// Runs `work` (device synchronised before and after) as the profiled region.
void profile_region(const std::function<void()>& work);

// KV blocks a sweep needs for its largest point that fits in `budget_blocks`.
int64_t sweep_kv_blocks(const SweepOptions& options, int64_t budget_blocks);

}  // namespace ds4
