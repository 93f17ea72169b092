// Many small device-to-device float copies in one launch (the speculative rollback's restores of
// raw-window rows and compressor frontier entries). The spans must not overlap each other's
// destinations; each is copied by one block. Called by engine/cuda (cuda_rollback.cpp).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ds4::cuda {

struct CopySpan {
  float* dst = nullptr;
  const float* src = nullptr;
  int64_t n = 0;  // floats
};

// spans: a DEVICE array of n_spans entries.
void copy_spans(const CopySpan* spans, int64_t n_spans, cudaStream_t stream);

}  // namespace ds4::cuda
