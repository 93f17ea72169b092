// SequenceKv: the per-sequence attention state the forward pass reads and writes (MODEL.md 2.5):
// per layer a raw window ring of the last `sliding_window` K=V rows, the compressed rows (and
// indexer rows on CSA layers) that grow with the context, and each compressor's frontier (the
// incomplete window). Implemented by the paged pool (kvcache/) and by engine/kv_state.h's
// ContiguousKv. Invariant: num_tokens() positions have been processed; compressed row c of a
// layer with ratio R exists iff c < num_tokens() / R. Rows are f32.
#pragma once
#include <cstdint>

namespace ds4 {

// Score value of an empty frontier slot (MODEL.md 2.2).
constexpr float kEmptyScore = -1e30f;

class SequenceKv {
 public:
  virtual ~SequenceKv() = default;
  virtual int64_t num_tokens() const = 0;
  virtual void set_num_tokens(int64_t n) = 0;
  // Makes room for the compressed rows of positions [0, n_tokens); false when out of space.
  virtual bool reserve(int64_t n_tokens) = 0;
  // Raw K=V row (head_dim floats) of position pos; pos must be within the last sliding_window.
  virtual float* raw_row(int layer, int64_t pos) = 0;
  // First position whose raw row exists (0, except for an MTP window restarted at a position).
  virtual int64_t raw_window_start() const { return 0; }
  // Compressed attention row c (head_dim floats) / indexer row c (indexer_dim floats).
  virtual float* comp_row(int layer, int64_t c) = 0;
  virtual float* index_row(int layer, int64_t c) = 0;
  // Frontier of the attention (indexer=false) or indexer compressor: [rows, width] kv and score,
  // rows = (ratio == 4 ? 8 : ratio), width = (ratio == 4 ? 2 : 1) * row width.
  virtual float* frontier_kv(int layer, bool indexer) = 0;
  virtual float* frontier_score(int layer, bool indexer) = 0;
};

// A SequenceKv that knows its place in a paged pool without being a view of that pool's
// KvCacheManager: a follower rank's mirror of the leader's sequence (parallel/mirror_kv.h), whose
// slot and block table come from the step message. Device backends address its rows through these.
class PagedSequenceKv : public SequenceKv {
 public:
  virtual int64_t pool_slot() const = 0;
  virtual const int32_t* pool_blocks() const = 0;  // [pool_block_count()] physical block ids
  virtual int64_t pool_block_count() const = 0;
};

// Frontier geometry of a compressor producing rows of `row_dim` values at this ratio.
inline int frontier_rows(int ratio) { return ratio == 4 ? 8 : ratio; }
inline int frontier_width(int ratio, int row_dim) { return (ratio == 4 ? 2 : 1) * row_dim; }

}  // namespace ds4
