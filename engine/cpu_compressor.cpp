// KV compressor frontier update and pooling (MODEL.md 2.2) and indexer top-k (2.3) for the CPU
// backend. Ratio 4 keeps two overlapping halves: rows 0..3 hold the previous window (scored with
// the first half of the gate), rows 4..7 the current one (second half); other ratios pool their
// own window only.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "engine/cpu_layer.h"
#include "engine/kv_state.h"

namespace ds4 {
namespace {

// Softmax-weighted sum over n candidates (kv[i·stride], score[i·stride]) for one output dim.
float pool_dim(const float* kv, const float* score, int n, int stride) {
  float mx = -INFINITY;
  for (int i = 0; i < n; ++i) mx = std::max(mx, score[i * stride]);
  if (!(mx > -INFINITY)) return 0.0f;
  double num = 0.0, den = 0.0;
  for (int i = 0; i < n; ++i) {
    const double e = std::exp(static_cast<double>(score[i * stride]) - mx);
    num += e * kv[i * stride];
    den += e;
  }
  return static_cast<float>(num / den);
}

}  // namespace

bool compressor_step(int ratio, int row_dim, const float* kv_proj, const float* gate_proj, const float* ape,
                     int64_t pos, float* frontier_kv, float* frontier_score, float* out) {
  const int width = frontier_width(ratio, row_dim);
  const int phase = static_cast<int>(pos % ratio);
  const int slot = ratio == 4 ? 4 + phase : phase;
  float* kv_row = frontier_kv + static_cast<int64_t>(slot) * width;
  float* score_row = frontier_score + static_cast<int64_t>(slot) * width;
  const float* ape_row = ape + static_cast<int64_t>(phase) * width;
  for (int j = 0; j < width; ++j) {
    kv_row[j] = kv_proj[j];
    score_row[j] = gate_proj[j] + ape_row[j];
  }
  if ((pos + 1) % ratio != 0) return false;

  if (ratio == 4) {
    for (int j = 0; j < row_dim; ++j) {
      // 8 candidates: previous window (rows 0..3, column j), current window (rows 4..7, column D+j).
      float kv[8], score[8];
      for (int r = 0; r < 4; ++r) {
        kv[r] = frontier_kv[r * width + j];
        score[r] = frontier_score[r * width + j];
        kv[4 + r] = frontier_kv[(4 + r) * width + row_dim + j];
        score[4 + r] = frontier_score[(4 + r) * width + row_dim + j];
      }
      out[j] = pool_dim(kv, score, 8, 1);
    }
    // The current window becomes the previous one for the next row.
    std::copy(frontier_kv + 4 * width, frontier_kv + 8 * width, frontier_kv);
    std::copy(frontier_score + 4 * width, frontier_score + 8 * width, frontier_score);
  } else {
    for (int j = 0; j < row_dim; ++j) out[j] = pool_dim(frontier_kv + j, frontier_score + j, ratio, width);
  }
  return true;
}

void compressor_save_undo(int ratio, int row_dim, int64_t pos, float* frontier_kv, float* frontier_score,
                          KvUndoLog& log) {
  const int width = frontier_width(ratio, row_dim);
  const int phase = static_cast<int>(pos % ratio);
  const int slot = ratio == 4 ? 4 + phase : phase;
  log.save(pos, frontier_kv + int64_t(slot) * width, width);
  log.save(pos, frontier_score + int64_t(slot) * width, width);
  if (ratio == 4 && (pos + 1) % ratio == 0) {  // the emission copies rows 4..7 over rows 0..3
    log.save(pos, frontier_kv, 4 * int64_t(width));
    log.save(pos, frontier_score, 4 * int64_t(width));
  }
}

std::vector<int64_t> indexer_top_k(const std::vector<float>& scores, int k) {
  std::vector<int64_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  if (static_cast<int64_t>(idx.size()) > k) {
    std::nth_element(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
      return scores[a] != scores[b] ? scores[a] > scores[b] : a < b;
    });
    idx.resize(k);
  }
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace ds4
