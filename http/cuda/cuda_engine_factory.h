// The CUDA implementation of http/device_engine.h: CudaBackend over the scheduler's paged KV pool
// in device memory (KvCacheManager on make_cuda_kv_storage), weights uploaded from the GGUF or
// generated on the GPU (DeviceWeights::synthesize), the pool sized from the device memory left.
// Linked into ds4serve only in a CUDA build (library ds4_http_cuda); tested by
// tests/cuda/cuda_serve_test.cpp.
#pragma once
#include "http/device_engine.h"

namespace ds4::http {

// Throws LoadError when no CUDA device is usable, the weights or the smallest pool do not fit.
DeviceEngine make_cuda_engine(const DeviceEngineRequest& request);

}  // namespace ds4::http
