// The KV pool geometry of a model (kvcache/kv_geometry.h) from its ModelConfig: per layer the
// compress ratio and whether it has an indexer, plus row widths and the raw window. The engine and
// the server build their KvCacheManager from it; kvcache/ itself never sees a ModelConfig.
#pragma once
#include "engine/model_config.h"
#include "kvcache/kv_geometry.h"

namespace ds4 {

// raw_ring_rows: raw ring rows per sequence and layer; 0 means the sliding window (what the CPU
// backend needs: it processes a chunk token by token per layer).
KvGeometry kv_geometry(const ModelConfig& config, int raw_ring_rows = 0);

}  // namespace ds4
