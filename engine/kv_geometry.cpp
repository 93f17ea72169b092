// ModelConfig -> KvGeometry (engine/kv_geometry.h).
#include "engine/kv_geometry.h"

namespace ds4 {

KvGeometry kv_geometry(const ModelConfig& config, int raw_ring_rows) {
  KvGeometry g;
  g.head_dim = config.head_dim;
  g.rope_dim = config.rope_dim;
  g.indexer_dim = config.indexer_dim;
  g.window = config.sliding_window;
  g.raw_ring_rows = raw_ring_rows > 0 ? raw_ring_rows : config.sliding_window;
  g.block_tokens = kKvBlockTokens;
  for (int il = 0; il < config.n_layer; ++il) {
    KvLayerGeometry l;
    l.ratio = config.compress_ratio(il);
    l.indexer = config.attention_kind(il) == AttentionKind::kCompressedSparse;
    g.layers.push_back(l);
  }
  return g;
}

}  // namespace ds4
