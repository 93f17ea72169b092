// Token sampling on the GPU: the algorithm of engine/sampler.cpp (greedy = first maximum;
// otherwise weights exp((l − max)/T) in f64, min-p on the weights, top-k and top-p in descending
// weight order with ties to the lower id, one draw proportional to weight from the counter-based
// uniform of (seed, step)) over rows of device logits, one token per row. Greedy rows are exact.
// For the others the sums run in a different order than the CPU's sequential ones (and CUDA's exp
// may differ from libm's by 1 ulp), so a token can differ only when the draw or a top-p / min-p
// threshold falls within ~1e-15 (relative) of a boundary (docs/GPU-CHECKS.md).
// Called by CudaBackend::sample and the GPU tests.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace ds4::cuda {

// One row's parameters (engine/sampler.h SamplingParams plus the request's draw counter).
struct SampleRow {
  float temperature = 1.0f;  // <= 0: greedy
  float top_p = 1.0f;
  float min_p = 0.0f;
  int32_t top_k = 0;
  uint64_t seed = 0;
  uint64_t step = 0;
};

struct SampleParams {
  const float* logits = nullptr;  // device [n_rows, logits_stride]
  int64_t logits_stride = 0;
  int64_t n_rows = 0;
  int64_t n_vocab = 0;
  const SampleRow* rows = nullptr;  // HOST [n_rows] (copied into the workspace)
  int32_t* tokens = nullptr;        // device [n_rows]
  void* workspace = nullptr;        // device, sample_workspace_bytes(n_rows, n_vocab)
  size_t workspace_bytes = 0;
};

// Device scratch the sampler needs for n_rows × n_vocab (f64 weights, sorted copies, sort scratch).
size_t sample_workspace_bytes(int64_t n_rows, int64_t n_vocab);
void sample(const SampleParams& p, cudaStream_t stream);

}  // namespace ds4::cuda
