// Direct synthetic quantised blocks: random but valid IQ2_XXS, Q2_K and Q4_K super-blocks (256
// values) drawn from a counter-based seed, with one super-scale per tensor chosen so the values
// have zero mean and a given standard deviation. The routed experts of synthetic models use them
// (270 G values in the full model: quantising floats would take hours): engine/synth.cpp writes
// them into GGUF files, kernels/cuda/synth.cu generates the same bytes in GPU memory. Header-only,
// host and device, integer arithmetic only, so both sides give identical bytes.
#pragma once
#include <cstdint>

#include "kernels/ggml_type.h"
#include "kernels/host_device.h"
#include "kernels/splitmix64.h"

namespace ds4 {

// The f16 super-scales shared by every block of a tensor (see synth_block_scales).
struct SynthBlockScales {
  uint16_t d_bits = 0;
  uint16_t dmin_bits = 0;  // Q2_K / Q4_K: the subtracted minimum's scale
};

// True for the types synth_block can generate.
DS4_HOST_DEVICE inline bool synth_direct_type(GgmlType type) {
  return type == GgmlType::IQ2_XXS || type == GgmlType::Q2_K || type == GgmlType::Q4_K;
}

// Scales for blocks of `type` whose values have standard deviation target_std (and mean 0 up to
// the f16 rounding of dmin). Host only (kernels/synth_blocks.cpp); aborts for another type.
SynthBlockScales synth_block_scales(GgmlType type, double target_std);

// Seed of row `row` of a tensor whose per-tensor seed is tensor_seed (engine/synth.cpp derives
// tensor_seed from the model seed and the tensor name). The float generator uses the same rows.
DS4_HOST_DEVICE inline uint64_t synth_row_seed(uint64_t tensor_seed, uint64_t row) {
  return tensor_seed ^ splitmix64(row + 0x1234567ull);
}

// Seed of super-block `block` (0-based within its row): blocks are independent of each other.
DS4_HOST_DEVICE inline uint64_t synth_block_seed(uint64_t row_seed, uint64_t block) {
  return splitmix64(row_seed ^ splitmix64(block ^ 0x5851f42d4c957f2dull));
}

namespace synth_detail {

DS4_HOST_DEVICE inline void put_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// n random bytes (n a multiple of 8) from the state, advancing it.
DS4_HOST_DEVICE inline void put_random(uint8_t* p, int n, uint64_t& state) {
  for (int i = 0; i < n; i += 8) {
    state = splitmix64(state);
    for (int b = 0; b < 8; ++b) p[i + b] = static_cast<uint8_t>(state >> (8 * b));
  }
}

}  // namespace synth_detail

// Block bytes: IQ2_XXS 66, Q2_K 84, Q4_K 144 (ggml layouts, MODEL.md 4.5). Value distributions:
//  IQ2_XXS: d; per 32-value group 4 random grid indices, 4 random 7-bit sign patterns and a
//           random 4-bit scale s (value = d·(0.5+s)/4·grid·sign).
//  Q2_K:    16 sub-scales sc ∈ [8, 15] with min m = sc and dmin = 1.5·d, random 2-bit levels q:
//           value = d·sc·(q − 1.5).
//  Q4_K:    8 sub-scales sc ∈ [32, 63] with m = sc and dmin = 7.5·d, random 4-bit levels q:
//           value = d·sc·(q − 7.5).
DS4_HOST_DEVICE inline void synth_block(GgmlType type, SynthBlockScales s, uint64_t seed, uint8_t* out) {
  using synth_detail::put_random;
  using synth_detail::put_u16;
  uint64_t state = seed;
  if (type == GgmlType::IQ2_XXS) {
    put_u16(out, s.d_bits);
    put_random(out + 2, 64, state);  // every index, sign pattern and scale is valid
    return;
  }
  state = splitmix64(state);
  const uint64_t scale_bits = state;
  if (type == GgmlType::Q2_K) {  // scales[16] qs[64] d dmin
    for (int j = 0; j < 16; ++j) {
      const uint8_t sc = static_cast<uint8_t>(8 + ((scale_bits >> (3 * j)) & 7));
      out[j] = static_cast<uint8_t>(sc | (sc << 4));
    }
    put_random(out + 16, 64, state);
    put_u16(out + 80, s.d_bits);
    put_u16(out + 82, s.dmin_bits);
    return;
  }
  // Q4_K: d dmin scales[12] qs[128]; 6-bit (sc, m) pairs packed as ggml's get_scale_min_k4 reads them.
  uint8_t sc[8];
  for (int j = 0; j < 8; ++j) sc[j] = static_cast<uint8_t>(32 + ((scale_bits >> (5 * j)) & 31));
  put_u16(out, s.d_bits);
  put_u16(out + 2, s.dmin_bits);
  uint8_t* scales = out + 4;
  for (int j = 0; j < 4; ++j) {
    scales[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    scales[j + 4] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));  // m = sc
    scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((sc[j + 4] & 15) << 4));
  }
  put_random(out + 16, 128, state);
}

}  // namespace ds4
