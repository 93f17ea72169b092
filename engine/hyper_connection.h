// Hyper-connections (mHC, MODEL.md 1.3): the residual state of a token is hc_count streams of
// n_embd values. Before a sub-layer, a learned mix gives the input weights (pre), the output
// weights (post) and a Sinkhorn-normalised stream mixing matrix (comb); after it, the state is
// updated as H'[b] = post[b]·y + Σ_a comb[a][b]·H[a]. The head collapses the streams with
// sigmoid weights. Used by the CPU backend for every layer and for the output head.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/model_config.h"
#include "engine/weights.h"
#include "kernels/thread_pool.h"

namespace ds4 {

constexpr int kMaxHcStreams = 16;

struct HcMix {
  float pre[kMaxHcStreams];
  float post[kMaxHcStreams];
  float comb[kMaxHcStreams * kMaxHcStreams];  // comb[a * hc + b]: source stream a -> destination b
};

// Mixes for n_tokens states H [n_tokens, hc * n_embd] with one sub-layer's fn / scale / base.
std::vector<HcMix> hc_compute_mix(const ModelConfig& c, const TensorView& fn, const TensorView& scale,
                                  const TensorView& base, const float* states, int64_t n_tokens, ThreadPool& pool);
// x[n_embd] = Σ_s pre[s] · H[s]
void hc_pre(const ModelConfig& c, const HcMix& mix, const float* state, float* x);
// H ← post · y + combᵀ · H (in place)
void hc_post(const ModelConfig& c, const HcMix& mix, const float* y, float* state);
// Head collapse: h[n_embd] = Σ_i w_i · H[i] for n_tokens states, w from the head's fn/scale/base
// (output_hc_* for the model, mtp.0.hc_head_* for the MTP module).
void hc_collapse(const ModelConfig& c, const TensorView& fn, const TensorView& scale, const TensorView& base,
                 const float* states, int64_t n_tokens, float* out, ThreadPool& pool);

}  // namespace ds4
