// The affine sub-block fit shared by the Q2_K and Q4_K quantisers (kernels/quant_formats.h):
// x_i ≈ scale·L_i − min, L_i ∈ [0, nmax]. Same idea as ggml's make_qkx2_quants (try several
// inverse scales around nmax/range, least-squares refit of scale and offset for each assignment,
// keep the best), written here with unit weights, which minimise the plain squared error.
// Deterministic; called by kernels/quant_q2_k.cpp and kernels/quant_q4_k.cpp.
#include <algorithm>
#include <cmath>

#include "kernels/f16.h"
#include "kernels/quant_formats.h"

namespace ds4::quant {
namespace {

constexpr int kSearchSteps = 24;        // inverse scales tried: nmax + kSearchDelta·k, |k| ≤ steps/2
constexpr float kSearchDelta = 0.1f;

float fit_error(const float* x, const int* l, int n, float scale, float offset) {
  float err = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float e = scale * static_cast<float>(l[i]) + offset - x[i];
    err += e * e;
  }
  return err;
}

// Least-squares (scale, offset) for a fixed assignment L, with the offset constrained ≤ 0.
// Returns false when the assignment carries no scale information (all L equal).
bool refit(const float* x, const int* l, int n, float* scale, float* offset) {
  double sl = 0, sl2 = 0, sx = 0, sxl = 0;
  for (int i = 0; i < n; ++i) {
    sl += l[i];
    sl2 += static_cast<double>(l[i]) * l[i];
    sx += x[i];
    sxl += static_cast<double>(x[i]) * l[i];
  }
  const double det = n * sl2 - sl * sl;
  if (det <= 0.0 || sl2 <= 0.0) return false;
  double a = (n * sxl - sl * sx) / det;
  double b = (sl2 * sx - sl * sxl) / det;
  if (b > 0.0) {  // offset must stay a subtrahend: pin it at 0 and refit the scale alone
    b = 0.0;
    a = sxl / sl2;
  }
  if (a < 0.0) return false;
  *scale = static_cast<float>(a);
  *offset = static_cast<float>(b);
  return true;
}

}  // namespace

ScaleMin fit_scale_min(const float* x, int n, int nmax) {
  float lo = 0.0f, hi = x[0];
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (hi <= lo) return {0.0f, -lo};  // constant sub-block (≤ 0): the offset alone represents it

  int l[32];
  float best_scale = (hi - lo) / static_cast<float>(nmax), best_offset = lo;
  for (int i = 0; i < n; ++i)
    l[i] = clamp_int(round_to_int((x[i] - lo) / best_scale), 0, nmax);
  float best_err = fit_error(x, l, n, best_scale, best_offset);

  for (int k = -kSearchSteps / 2; k <= kSearchSteps / 2; ++k) {
    const float iscale = (static_cast<float>(nmax) + kSearchDelta * static_cast<float>(k)) /
                         (hi - lo);
    for (int i = 0; i < n; ++i) l[i] = clamp_int(round_to_int(iscale * (x[i] - lo)), 0, nmax);
    float scale, offset;
    if (!refit(x, l, n, &scale, &offset)) continue;
    const float err = fit_error(x, l, n, scale, offset);
    if (err < best_err) {
      best_err = err;
      best_scale = scale;
      best_offset = offset;
    }
  }
  return {best_scale, -best_offset};
}

namespace {

// Levels of one sub-block for the stored step dl and offset ml; returns the squared error.
float assign_levels(const float* x, int n, float dl, float ml, int nmax, int* l) {
  float err = 0.0f;
  for (int i = 0; i < n; ++i) {
    l[i] = dl > 0.0f ? clamp_int(round_to_int((x[i] + ml) / dl), 0, nmax) : 0;
    const float e = dl * static_cast<float>(l[i]) - ml - x[i];
    err += e * e;
  }
  return err;
}

// f16 super-scale for the largest sub-block parameter `top` over `qmax` integer steps.
uint16_t super_scale_bits(float top, int qmax) {
  return f32_to_f16(std::min(top / static_cast<float>(qmax), kF16Max));
}

}  // namespace

void quantize_k_block(const float* x, int n_sub, int sub_len, int nmax, int qmax,
                      KQuantBlock* out) {
  ScaleMin fits[16];
  float top_scale = 0.0f, top_min = 0.0f;
  for (int j = 0; j < n_sub; ++j) {
    fits[j] = fit_scale_min(x + j * sub_len, sub_len, nmax);
    top_scale = std::max(top_scale, fits[j].scale);
    top_min = std::max(top_min, fits[j].min);
  }
  out->d_bits = super_scale_bits(top_scale, qmax);
  out->dmin_bits = super_scale_bits(top_min, qmax);
  const float d = f16_to_f32(out->d_bits), dmin = f16_to_f32(out->dmin_bits);

  for (int j = 0; j < n_sub; ++j) {
    const float* xs = x + j * sub_len;
    const int sc0 = d > 0.0f ? clamp_int(round_to_int(fits[j].scale / d), 0, qmax) : 0;
    const int m0 = dmin > 0.0f ? clamp_int(round_to_int(fits[j].min / dmin), 0, qmax) : 0;
    float best_err = INFINITY;
    int l[32];
    for (int dsc = -1; dsc <= 1; ++dsc) {
      for (int dm = -1; dm <= 1; ++dm) {
        const int sc = sc0 + dsc, m = m0 + dm;
        if (sc < 0 || sc > qmax || m < 0 || m > qmax) continue;
        const float err = assign_levels(xs, sub_len, d * static_cast<float>(sc),
                                        dmin * static_cast<float>(m), nmax, l);
        if (err < best_err) {
          best_err = err;
          out->sc[j] = sc;
          out->m[j] = m;
          std::copy(l, l + sub_len, out->levels + j * sub_len);
        }
      }
    }
  }
}

}  // namespace ds4::quant
