// Super-scales of the direct synthetic blocks (see synth_blocks.h): d is chosen from the exact
// second moment of each format's value distribution. For IQ2_XXS the mean squared grid magnitude
// is measured once by decoding every codebook entry through the format's own dequantiser.
#include "kernels/synth_blocks.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/f16.h"
#include "kernels/quant.h"

namespace ds4 {
namespace {

// Mean of grid[i][j]² over the 256 codebook entries and their 8 elements.
double iq2xxs_grid_mean_square() {
  // 8 blocks × 8 groups × 4 indices cover indices 0..255 once; d = 1, scale 0 (value = grid/8).
  constexpr int kBlocks = 8;
  std::vector<uint8_t> blocks(kBlocks * 66, 0);
  for (int b = 0; b < kBlocks; ++b) {
    uint8_t* blk = blocks.data() + b * 66;
    synth_detail::put_u16(blk, f32_to_f16(1.0f));
    for (int g = 0; g < 8; ++g)
      for (int l = 0; l < 4; ++l) blk[2 + 8 * g + l] = static_cast<uint8_t>(b * 32 + g * 4 + l);
  }
  std::vector<float> values(kBlocks * 256);
  dequantize_row(GgmlType::IQ2_XXS, blocks.data(), values.data(), static_cast<int64_t>(values.size()));
  double sum_sq = 0.0;
  for (float v : values) sum_sq += double(v) * 8.0 * double(v) * 8.0;
  return sum_sq / static_cast<double>(values.size());
}

}  // namespace

SynthBlockScales synth_block_scales(GgmlType type, double target_std) {
  SynthBlockScales s;
  double var_per_d2 = 0.0;  // value variance for d = 1
  double dmin_per_d = 0.0;
  switch (type) {
    case GgmlType::IQ2_XXS: {
      static const double grid_ms = iq2xxs_grid_mean_square();
      double scale_ms = 0.0;  // E[(0.5 + s)²] over s uniform in 0..15
      for (int k = 0; k < 16; ++k) scale_ms += (0.5 + k) * (0.5 + k) / 16.0;
      var_per_d2 = scale_ms * 0.0625 * grid_ms;
      break;
    }
    case GgmlType::Q2_K: {  // sc uniform in 8..15, (q − 1.5)² averages 1.25
      double sc_ms = 0.0;
      for (int k = 8; k < 16; ++k) sc_ms += double(k) * k / 8.0;
      var_per_d2 = sc_ms * 1.25;
      dmin_per_d = 1.5;
      break;
    }
    case GgmlType::Q4_K: {  // sc uniform in 32..63, (q − 7.5)² averages 21.25
      double sc_ms = 0.0;
      for (int k = 32; k < 64; ++k) sc_ms += double(k) * k / 32.0;
      var_per_d2 = sc_ms * 21.25;
      dmin_per_d = 7.5;
      break;
    }
    default:
      std::fprintf(stderr, "%s:%d: synth_block_scales: type %u has no direct generator\n", __FILE__, __LINE__,
                   static_cast<unsigned>(type));
      std::abort();
  }
  const float d = static_cast<float>(target_std / std::sqrt(var_per_d2));
  s.d_bits = f32_to_f16(d);
  s.dmin_bits = f32_to_f16(static_cast<float>(dmin_per_d) * f16_to_f32(s.d_bits));
  return s;
}

}  // namespace ds4
