// CPU reference ops (see cpu_ops.h).
#include "kernels/cpu_ops.h"

#include <vector>

#include "kernels/quant.h"

namespace ds4 {

void matmul(const MatView& w, const float* x, int64_t n_tokens, float* y, ThreadPool& pool) {
  // Each row is dequantised once and dotted in f32 with every token: the same arithmetic whatever
  // the number of tokens, so a sequence's results do not depend on what else is in the batch.
  const bool dequant_first = w.type != GgmlType::F32;
  pool.parallel_for(w.n_out, [&](int64_t begin, int64_t end) {
    std::vector<float> row(dequant_first ? w.n_in : 0);
    for (int64_t o = begin; o < end; ++o) {
      const void* src = w.row(o);
      GgmlType type = w.type;
      if (dequant_first) {
        dequantize_row(w.type, src, row.data(), w.n_in);
        src = row.data();
        type = GgmlType::F32;
      }
      for (int64_t t = 0; t < n_tokens; ++t) y[t * w.n_out + o] = dot_row(type, src, x + t * w.n_in, w.n_in);
    }
  });
}

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out) {
  double sum_sq = 0.0;
  for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv * (w ? w[i] : 1.0f);
}

}  // namespace ds4
