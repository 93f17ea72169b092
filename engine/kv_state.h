// ContiguousKv: the simple in-memory SequenceKv (kvcache/sequence_kv.h) of one sequence, used by
// the CPU reference tests and the CLI; the paged pool (kvcache/) is the production one.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/model_config.h"
#include "kvcache/sequence_kv.h"

namespace ds4 {

// Plain vectors per layer; grows on reserve(). For the CPU reference and tests.
class ContiguousKv final : public SequenceKv {
 public:
  // raw_ring_rows: raw rows kept per layer (slot = pos % rows), >= the sliding window; 0: the window.
  // A larger ring lets rows ahead of a query's window be written without overwriting rows it reads
  // (the MTP's recursive drafts).
  explicit ContiguousKv(const ModelConfig& config, int raw_ring_rows = 0);
  // Empties the raw windows and continues at position pos (the MTP window after a sync).
  void restart_raw_window(int64_t pos) { n_tokens_ = raw_start_ = pos; }
  int64_t raw_window_start() const override { return raw_start_; }
  int64_t num_tokens() const override { return n_tokens_; }
  void set_num_tokens(int64_t n) override { n_tokens_ = n; }
  bool reserve(int64_t n_tokens) override;
  float* raw_row(int layer, int64_t pos) override;
  float* comp_row(int layer, int64_t c) override;
  float* index_row(int layer, int64_t c) override;
  float* frontier_kv(int layer, bool indexer) override;
  float* frontier_score(int layer, bool indexer) override;

 private:
  struct Frontier {
    std::vector<float> kv, score;
  };
  struct Layer {
    std::vector<float> raw;    // [ring_rows, head_dim] ring, slot = pos % ring_rows
    std::vector<float> comp;   // [n_comp, head_dim]
    std::vector<float> index;  // [n_comp, indexer_dim] (CSA layers)
    Frontier attn_frontier, index_frontier;
  };
  ModelConfig config_;
  int ring_rows_;
  std::vector<Layer> layers_;
  int64_t n_tokens_ = 0;
  int64_t raw_start_ = 0;
};

}  // namespace ds4
