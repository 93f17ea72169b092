// copy_spans (see copy_spans.h): one block per span, threads striding over its floats.
#include "kernels/cuda/copy_spans.h"

#include "kernels/cuda/cuda_check.h"

namespace ds4::cuda {
namespace {

__global__ void copy_spans_kernel(const CopySpan* spans) {
  const CopySpan s = spans[blockIdx.x];
  for (int64_t i = threadIdx.x; i < s.n; i += blockDim.x) s.dst[i] = s.src[i];
}

}  // namespace

void copy_spans(const CopySpan* spans, int64_t n_spans, cudaStream_t stream) {
  DS4_LAUNCH_REQUIRE(n_spans >= 0 && n_spans <= 0x7fffffff && (n_spans == 0 || spans), "cuda::copy_spans", "bad span list");
  if (n_spans == 0) return;
  copy_spans_kernel<<<static_cast<unsigned>(n_spans), 128, 0, stream>>>(spans);
  DS4_CUDA_LAUNCH_CHECK("copy_spans_kernel");
}

}  // namespace ds4::cuda
