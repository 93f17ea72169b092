// Tensor-core dequantising products (mma_matmul.h). A block of 4 warps; warp w owns the row tile
// (w / wsplit) of 32 rows and the k part (blockIdx.z · wsplit + w % wsplit) of the
// wsplit · csplit parts; the chunks of a row (kChunkValues values each) go round robin to the
// parts. A warp streams its chunks for its 32 rows into a shared-memory ring with aligned
// 16-byte cp.async copies, then per 32-value sub-chunk decodes the A fragments of its rows once
// and runs them against the pass's 8-token tiles. Two instantiations per format, picked per call:
//   * NT = 4 (the general one): 32-token passes, a 4-stage ring (3 chunks in flight), 3 blocks/SM;
//   * NT = 1 (decode-sized calls: ≤ 8 tokens; grouped calls whose groups average ≤ 4 tokens, or
//     through a list of ≤ 48 groups): 8-token passes, a 3-stage ring, registers budgeted for 4-5
//     blocks/SM (16-20 warps), two sub-chunks decoded per loop step;
//   * NT = 2 (9-16 tokens): 16-token passes, 3 stages, 4 blocks/SM.
// (tiles_for picks one per call; DS4_MMA_TILES overrides the thresholds for tuning runs.)
// Both run the same chunks per part, sub-chunks in the same order, the same MMA chains and the
// same reduction tree, so every output element is bit-identical whichever one runs (batch
// invariance across the tilings; cuda_matmul_test compares 1, 3, 8, 12, 16 and 37 tokens with 45).
// Grid: x = token slab (plain mode; slab s runs passes s, s + gridDim.x, …) or group (grouped
// mode), y = block of row tiles, z = k part within a cluster of csplit blocks; wsplit and csplit
// come from the shape alone (choose_split, per-shape rule; DS4_MMA_SPLIT overrides it for tuning runs).
// Paired launches (mma_matmul_pair: two matrices of one format on the same activations and token
// list, e.g. gate and up) put the second matrix's row blocks after the first's in y; each block
// runs exactly what it runs in its matrix's own launch (same split), so the bits do not change.
// Q8_0 decodes a pair of signed bytes with two byte permutes and one bf16 subtraction (exact);
// Q8_0 reads its 2-byte aligned bytes as aligned words plus funnel shifts; F16 (16-byte aligned
// matrices only, mma_matmul_handles) one 16-byte word per lane and row piece. IQ2_XXS: one
// 8-byte shared-memory lookup per 8 weights (byte-permute selectors of the grid point); the signs
// enter the selectors (one multiply and mask per 4 values picks the negative high bytes).
// Activations: each warp splits its tokens' x into the bf16 planes per sub-chunk, or (IQ2_XXS and
// Q2_K with MatmulParams::x_planes: the routed experts) reads the planes split_x_planes
// prepared once per call with the same split3, and the K-quants' 8-value sums: the same values.
// Row segments of the ring are padded so that the 8 rows a warp's lanes read
// at once fall into different banks (seg_bytes).
//
// Fragment mapping (m16n8k16): lane = 4g + c holds rows g and g + 8 of an m16 tile and, in the
// k dimension, the 8 consecutive columns 8c .. 8c + 7 of the sub-chunk: columns 8c + 4s + 0..3
// are the MMA's logical k (2c, 2c+1, 2c+8, 2c+9) of step s = 0, 1. A and B use the same
// permutation, so the sum is the plain dot product, and each lane's weights and activations are
// contiguous in memory. The C fragment (rows g, g + 8; tokens 2c, 2c + 1) then needs the block
// scales of the lane's own rows and, for the K-quants, Σx of other lanes' tokens (shuffles).
#include "kernels/cuda/mma_matmul.h"

#include <algorithm>
#include <cooperative_groups.h>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/quant_decode.cuh"

namespace ds4::cuda {
namespace {

namespace cg = cooperative_groups;

__device__ const uint64_t kIq2Grid[256] = {
#include "kernels/iq2xxs_grid.inc"
};

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kMTiles = 2;                  // m16 tiles per warp
constexpr int kWarpRows = 16 * kMTiles;     // 32 rows per warp
// n8 token tiles per pass: NT = 4 (32-token passes) in general; NT = 8 (64-token passes: each
// weight decoded once per 64 tokens, two blocks per SM) for prefill-sized calls; NT = 1 (8-token
// passes, fewer registers, 3 stages, more blocks per SM) for decode-sized calls. An output
// element's arithmetic is the same in all (same chunks per part, sub-chunk order and reduction tree).
constexpr int kWideTiles = 8;
constexpr int kLargeTiles = 4;
constexpr int kMidTiles = 2;
constexpr int kSmallTiles = 1;
template <int NT>
constexpr int stages_for() { return NT >= kLargeTiles ? 4 : 3; }
// Blocks per SM the registers are budgeted for (shared memory allows as many at 1-2 tiles: Q8_0's
// 43 KB blocks five, IQ2_XXS's 45 KB five, Q2_K's 55 KB four; Q4_K's 68 KB three).
template <GgmlType T, int NT>
constexpr int min_blocks_for() {
  return NT == kSmallTiles ? (T == GgmlType::Q8_0 ? 5 : 4) : NT == kMidTiles ? 4 : NT == kLargeTiles ? 3 : 2;
}

// Chunk geometry per format: values and bytes of one row's chunk (whole blocks).
template <GgmlType T>
struct MmaFormat;
template <>
struct MmaFormat<GgmlType::Q8_0> { static constexpr int kValues = 64, kBytes = 68; };
template <>
struct MmaFormat<GgmlType::F16> { static constexpr int kValues = 32, kBytes = 64; };
template <>
struct MmaFormat<GgmlType::IQ2_XXS> { static constexpr int kValues = 256, kBytes = 66; };
template <>
struct MmaFormat<GgmlType::Q2_K> { static constexpr int kValues = 256, kBytes = 84; };
template <>
struct MmaFormat<GgmlType::Q4_K> { static constexpr int kValues = 256, kBytes = 144; };

// Bytes per row per stage: a chunk at any 2-byte alignment spans at most kBytes + 30 bytes of
// aligned 16-byte words; Q2_K (128) and IQ2_XXS (96) get 16 more, since a stride of 32 (24) words
// put the 8 rows a warp reads at once into 1 (2) bank groups: 8-way (2-way) conflicts on every
// load (a model of the decode's loads: Q2_K 224 -> 44 wavefronts per sub-chunk, IQ2_XXS 32 -> 16;
// Q8_0's 112 and Q4_K's 176 are already the best a multiple of 16 gives).
template <GgmlType T>
constexpr int seg_bytes() {
  constexpr int tight = (MmaFormat<T>::kBytes + 30 + 15) / 16 * 16;
  return T == GgmlType::Q2_K || T == GgmlType::IQ2_XXS ? tight + 16 : tight;
}

template <GgmlType T, int NT>
struct Layout {
  static constexpr int kStages = stages_for<NT>();
  static constexpr int kSeg = seg_bytes<T>();
  static constexpr int kStageBytes = kWarpRows * kSeg;
  static constexpr int kWarpBytes = kStages * kStageBytes;
  static constexpr int kSmemBytes = kWarps * kWarpBytes;
  // The split-K partials reuse a warp's stages.
  static_assert(kMTiles * NT * 4 * 32 * 4 <= kWarpBytes, "reduction buffer larger than the stages");
};

// ---- small helpers -------------------------------------------------------------------------

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// d += A·B, bf16 inputs, f32 accumulators.
__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Two floats that are exactly representable in bf16 (low 16 bits zero) as a bf16 pair.
__device__ __forceinline__ uint32_t bf16_pair_exact(float lo, float hi) {
  return __byte_perm(__float_as_uint(lo), __float_as_uint(hi), 0x7632);
}

// Bytes I0 and I1 of w, each < 128, as the bf16 pair (b0 + 128, b1 + 128) (0x43XX = 128 + XX).
template <int I0, int I1>
__device__ __forceinline__ __nv_bfloat162 biased_pair(uint32_t w) {
  const uint32_t bits = __byte_perm(w, 0x43434343u, I0 | (4 << 4) | (I1 << 8) | (4 << 12));
  return *reinterpret_cast<const __nv_bfloat162*>(&bits);
}
__device__ __forceinline__ uint32_t bf162_bits(__nv_bfloat162 v) { return *reinterpret_cast<const uint32_t*>(&v); }

// Bytes I0, I1 of w (< 128 each) as an exact bf16 pair.
template <int I0, int I1>
__device__ __forceinline__ uint32_t small_pair(uint32_t w) {
  return bf162_bits(__hsub2(biased_pair<I0, I1>(w), __floats2bfloat162_rn(128.0f, 128.0f)));
}

// 8 bytes at a 2-byte aligned shared-memory address: three aligned words and two funnel shifts
// (the third word may lie past the data; its bytes are shifted out). The word address is p minus
// its misalignment (pointer arithmetic, not an integer round trip, so that the compiler keeps
// the shared-memory space: LDS with 32-bit addresses instead of generic 64-bit loads).
__device__ __forceinline__ uint2 ld_u64_a2(const uint8_t* p) {
  const uint32_t mis = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(p)) & 3u;
  const uint32_t* w = reinterpret_cast<const uint32_t*>(p - mis);
  const uint32_t shift = mis * 8u;
  const uint32_t x0 = w[0], x1 = w[1], x2 = w[2];
  return make_uint2(__funnelshift_r(x0, x1, shift), __funnelshift_r(x1, x2, shift));
}

// Signed bytes I0, I1 of w as an exact bf16 pair: q = v − 128·b7 with v = q & 127 and b7 its
// sign bit, as (128 + v) − (128 + 128·b7), both exact bf16 magic numbers (0x43vv and 0x4300 /
// 0x4380): two byte permutes and one bf16 subtraction per pair instead of per-value conversions.
template <int I0, int I1>
__device__ __forceinline__ uint32_t s8_pair(uint32_t w) {
  return bf162_bits(__hsub2(biased_pair<I0, I1>(w & 0x7f7f7f7fu), biased_pair<I0, I1>(w & 0x80808080u)));
}

// An integer u < 2^23 as an exact float without the conversion unit (magic number 2^23).
__device__ __forceinline__ float small_float(uint32_t u) { return __uint_as_float(0x4B000000u | u) - 8388608.0f; }

// Splits x0, x1 exactly into bf16 pairs hi + mid + lo (truncation: each part takes the next 8
// significant bits, so the three parts hold all 24).
__device__ __forceinline__ void split3(float x0, float x1, uint32_t& hi, uint32_t& mid, uint32_t& lo) {
  const uint32_t u0 = __float_as_uint(x0), u1 = __float_as_uint(x1);
  const float r0 = x0 - __uint_as_float(u0 & 0xffff0000u), r1 = x1 - __uint_as_float(u1 & 0xffff0000u);
  const uint32_t q0 = __float_as_uint(r0), q1 = __float_as_uint(r1);
  const float l0 = r0 - __uint_as_float(q0 & 0xffff0000u), l1 = r1 - __uint_as_float(q1 & 0xffff0000u);
  hi = __byte_perm(u0, u1, 0x7632);
  mid = __byte_perm(q0, q1, 0x7632);
  lo = __byte_perm(__float_as_uint(l0), __float_as_uint(l1), 0x7632);
}

// The K-quants' Σx of a lane's 8 values, in the order both the kernel and split_x_planes use.
__device__ __forceinline__ float sum8(float4 u, float4 v) { return ((u.x + u.y) + (u.z + u.w)) + ((v.x + v.y) + (v.z + v.w)); }

// Bytes per row of prepared planes (x_plane_row_bytes): hi, mid, lo (2·n_in each), n_in / 8 sums.
__host__ __device__ constexpr int64_t plane_row_bytes(int64_t n_in) { return 13 * n_in / 2; }

// Formats whose kernels read prepared planes (MatmulParams::x_planes): the q2 routed experts'
// (H200, 64 tokens x 6 routes: IQ2_XXS 686 -> 638 us, Q2_K 810 -> 764 with the split; Q4_K's
// kernel, bound by its decode, gained under 1% at 64 tokens and lost 4.5% at 256: it reads x).
template <GgmlType T>
constexpr bool reads_planes() { return T == GgmlType::IQ2_XXS || T == GgmlType::Q2_K; }

// A lane's 8 activations at column col as bf16 planes (hi, mid, lo) and, for the K-quants, their
// sum. kPlanes: row points at the token's prepared planes (split_x_planes; the hi plane's 2·n_in =
// plane_bytes bytes, then mid, lo and the sums); else at its f32 values, split here (every warp).
template <GgmlType T, bool kPlanes>
__device__ __forceinline__ void load_x(const float* row, int64_t col, uint32_t plane_bytes, uint32_t (&xh)[4],
                                       uint32_t (&xm)[4], uint32_t (&xl)[4], float& part) {
  if constexpr (kPlanes) {
    const uint8_t* b = reinterpret_cast<const uint8_t*>(row) + 2 * col;
    const uint4 h = __ldg(reinterpret_cast<const uint4*>(b));
    const uint4 m = __ldg(reinterpret_cast<const uint4*>(b + plane_bytes));
    const uint4 l = __ldg(reinterpret_cast<const uint4*>(b + 2 * plane_bytes));
    xh[0] = h.x, xh[1] = h.y, xh[2] = h.z, xh[3] = h.w;
    xm[0] = m.x, xm[1] = m.y, xm[2] = m.z, xm[3] = m.w;
    xl[0] = l.x, xl[1] = l.y, xl[2] = l.z, xl[3] = l.w;
    if constexpr (T == GgmlType::Q2_K || T == GgmlType::Q4_K)
      part = __ldg(reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(row) + 3 * plane_bytes + col / 2));
  } else {
    const float4 u = __ldg(reinterpret_cast<const float4*>(row + col));
    const float4 v = __ldg(reinterpret_cast<const float4*>(row + col + 4));
    split3(u.x, u.y, xh[0], xm[0], xl[0]);
    split3(u.z, u.w, xh[1], xm[1], xl[1]);
    split3(v.x, v.y, xh[2], xm[2], xl[2]);
    split3(v.z, v.w, xh[3], xm[3], xl[3]);
    if constexpr (T == GgmlType::Q2_K || T == GgmlType::Q4_K) part = sum8(u, v);
  }
}

// split_x_planes: one thread per 8 values of a row (the same split3 and sum8 as the kernels).
__global__ void split_x_planes_kernel(const float* x, int64_t x_stride, int64_t n_rows, int64_t n_in, uint8_t* planes,
                                      int64_t row_bytes) {
  const int64_t groups = n_in / 8;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_rows * groups) return;
  const int64_t r = i / groups, q = i % groups;
  const float* src = x + r * x_stride + 8 * q;
  const float4 u = *reinterpret_cast<const float4*>(src), v = *reinterpret_cast<const float4*>(src + 4);
  uint4 h, m, l;
  split3(u.x, u.y, h.x, m.x, l.x);
  split3(u.z, u.w, h.y, m.y, l.y);
  split3(v.x, v.y, h.z, m.z, l.z);
  split3(v.z, v.w, h.w, m.w, l.w);
  uint8_t* dst = planes + r * row_bytes;
  reinterpret_cast<uint4*>(dst)[q] = h;
  reinterpret_cast<uint4*>(dst + 2 * n_in)[q] = m;
  reinterpret_cast<uint4*>(dst + 4 * n_in)[q] = l;
  reinterpret_cast<float*>(dst + 6 * n_in)[q] = sum8(u, v);
}

// ---- decoding one row's 8 values of a 32-value sub-chunk -----------------------------------

// What a lane needs of one row for one sub-chunk: its 8 weights (columns 8c .. 8c+7) as bf16
// pairs, the scale of the MMA sum, and the K-quant minimums (dmin·m).
struct RowSub {
  uint32_t a[4];    // pairs (0,1) (2,3) (4,5) (6,7); F16: the hi parts
  uint32_t alo[4];  // F16: the lo parts
  float scale;
  float min0, min1;  // Q2_K: the 16-value halves; Q4_K: min0
};

template <GgmlType T>
__device__ __forceinline__ void decode_sub(const uint8_t* chunk, int j, int c, const uint64_t* grid, RowSub& r);

template <>
__device__ __forceinline__ void decode_sub<GgmlType::Q8_0>(const uint8_t* chunk, int j, int c, const uint64_t*,
                                                           RowSub& r) {
  const uint8_t* b = chunk + 34 * j;
  r.scale = half_bits_to_float(ld_u16(b));
  const uint2 w = ld_u64_a2(b + 2 + 8 * c);
  r.a[0] = s8_pair<0, 1>(w.x);
  r.a[1] = s8_pair<2, 3>(w.x);
  r.a[2] = s8_pair<0, 1>(w.y);
  r.a[3] = s8_pair<2, 3>(w.y);
}

template <>
__device__ __forceinline__ void decode_sub<GgmlType::F16>(const uint8_t* chunk, int, int c, const uint64_t*, RowSub& r) {
  r.scale = 1.0f;
  // 16-byte aligned (mma_matmul_handles): one 16-byte load instead of six words and funnel shifts.
  const uint4 h = *reinterpret_cast<const uint4*>(chunk + 16 * c);
  const uint32_t hs[4] = {h.x, h.y, h.z, h.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t h = hs[i];
    const float f0 = half_bits_to_float(h & 0xffffu), f1 = half_bits_to_float(h >> 16);
    const float h0 = __uint_as_float(__float_as_uint(f0) & 0xffff0000u);
    const float h1 = __uint_as_float(__float_as_uint(f1) & 0xffff0000u);
    r.a[i] = bf16_pair_exact(h0, h1);
    r.alo[i] = bf16_pair_exact(f0 - h0, f1 - h1);  // ≤ 3 significant bits: exact
  }
}

// IQ2_XXS grid in shared memory: per grid point, four byte-permute selectors (16 bits each, one
// per pair of values) that assemble the pair's bf16 bits from the bytes of (kIq2Lo, kIq2Hi): a
// magnitude 8, 25 or 43 (code 0, 1, 2) is bf16 0x4100, 0x41C8 or 0x422C, its low byte at index
// code, its high byte 0x41 / 0x42 at index 4 / 5; a negative value's high byte 0xC1 / 0xC2 sits
// 2 further (index 6 / 7), so a value's sign is bit 1 of its high-byte selector nibble.
struct Iq2Tables {
  uint2 sel[256];
};
constexpr uint32_t kIq2Lo = 0x002CC800u, kIq2Hi = 0xC2C14241u;

// Sign bits 0..3 of `bits` (< 128) as bit 1 of the high-byte nibbles of a selector word (bit i ->
// bit 8i + 5): the multiply's partial products never overlap for 7-bit inputs, the mask keeps
// the four wanted ones.
__device__ __forceinline__ uint32_t iq2_sign_selectors(uint32_t bits) { return (bits * 0x04081020u) & 0x20202020u; }

// Bytes of (lo, hi) picked by the low 16 bits of sel (nibbles < 8: copies, never sign fills);
// prmt directly, since __byte_perm masks the selector first.
__device__ __forceinline__ uint32_t permute_bytes(uint32_t lo, uint32_t hi, uint32_t sel) {
  uint32_t d;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(lo), "r"(hi), "r"(sel));
  return d;
}

template <>
__device__ __forceinline__ void decode_sub<GgmlType::IQ2_XXS>(const uint8_t* chunk, int j, int c, const uint64_t* tables,
                                                              RowSub& r) {
  const Iq2Tables& t = *reinterpret_cast<const Iq2Tables*>(tables);
  const float d = half_bits_to_float(ld_u16(chunk));
  const uint8_t* q = chunk + 2 + 8 * j;
  const uint32_t b = ld_u32_a2(q + 4);
  r.scale = d * (0.5f + small_float(b >> 28)) * 0.25f;
  const uint2 s = t.sel[q[c]];
  const uint32_t signs = iq2_signs((b >> (7 * c)) & 127u);  // values 0..7; bit 7 the parity
  const uint32_t sel_lo = s.x | iq2_sign_selectors(signs & 127u), sel_hi = s.y | iq2_sign_selectors(signs >> 4);
  r.a[0] = permute_bytes(kIq2Lo, kIq2Hi, sel_lo);
  r.a[1] = permute_bytes(kIq2Lo, kIq2Hi, sel_lo >> 16);
  r.a[2] = permute_bytes(kIq2Lo, kIq2Hi, sel_hi);
  r.a[3] = permute_bytes(kIq2Lo, kIq2Hi, sel_hi >> 16);
}

// The selector nibbles (lo, hi) of a positive magnitude byte: code 0, 1, 2 for 0x08, 0x19, 0x2b.
__device__ __forceinline__ uint32_t iq2_byte_selector(uint32_t byte) {
  const uint32_t code = byte == 0x08u ? 0u : byte == 0x19u ? 1u : 2u;
  return code | ((code == 2u ? 5u : 4u) << 4);
}

// Fills the IQ2_XXS grid selectors (every thread of the block; ends with a barrier).
__device__ void build_iq2_tables(Iq2Tables& t) {
  for (int i = threadIdx.x; i < 256; i += blockDim.x) {
    const uint64_t g = kIq2Grid[i];
    uint32_t half[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      half[h] = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) half[h] |= iq2_byte_selector(static_cast<uint32_t>(g >> (32 * h + 8 * k)) & 0xffu) << (8 * k);
    }
    t.sel[i] = make_uint2(half[0], half[1]);
  }
  __syncthreads();
}

// Q2_K sub-chunk j = unit 4h + jj: values 128h + 32jj + 16t + l from (qs[32h + 16t + l] >> 2jj) & 3
// with scale byte 8h + 2jj + t. Lane c holds t = c / 2, l = 8(c & 1) .. +7: qs bytes 32h + 8c.
template <>
__device__ __forceinline__ void decode_sub<GgmlType::Q2_K>(const uint8_t* chunk, int j, int c, const uint64_t*, RowSub& r) {
  const int h = j >> 2, jj = j & 3;
  const float d = half_bits_to_float(ld_u16(chunk + 80));
  const float dmin = half_bits_to_float(ld_u16(chunk + 82));
  const uint32_t sc2 = ld_u16(chunk + 8 * h + 2 * jj);  // scale bytes of the two 16-value halves
  const uint32_t sc = (sc2 >> (8 * (c >> 1))) & 15u;
  r.scale = d;
  r.min0 = dmin * small_float((sc2 >> 4) & 15u);
  r.min1 = dmin * small_float(sc2 >> 12);
  const uint8_t* q = chunk + 16 + 32 * h + 8 * c;
  const uint32_t w0 = (ld_u32_a2(q) >> (2 * jj)) & 0x03030303u, w1 = (ld_u32_a2(q + 4) >> (2 * jj)) & 0x03030303u;
  const float scf = small_float(sc);
  const __nv_bfloat162 mul = __floats2bfloat162_rn(scf, scf), add = __floats2bfloat162_rn(-128.0f * scf, -128.0f * scf);
  // (128 + q)·sc − 128·sc = sc·q ≤ 45: exact in one bf16 FMA.
  r.a[0] = bf162_bits(__hfma2(biased_pair<0, 1>(w0), mul, add));
  r.a[1] = bf162_bits(__hfma2(biased_pair<2, 3>(w0), mul, add));
  r.a[2] = bf162_bits(__hfma2(biased_pair<0, 1>(w1), mul, add));
  r.a[3] = bf162_bits(__hfma2(biased_pair<2, 3>(w1), mul, add));
}

// Q4_K sub-chunk j: values 64(j/2) + 32(j%2) .. from the low (j even) or high nibbles of
// qs[32(j/2) ..]; lane c holds qs bytes 32(j/2) + 8c .. +7. 6-bit scale and min of unit j.
template <>
__device__ __forceinline__ void decode_sub<GgmlType::Q4_K>(const uint8_t* chunk, int j, int c, const uint64_t*, RowSub& r) {
  const float d = half_bits_to_float(ld_u16(chunk));
  const float dmin = half_bits_to_float(ld_u16(chunk + 2));
  const uint8_t* s = chunk + 4;
  int sc, m;
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
  r.scale = d * small_float(static_cast<uint32_t>(sc));
  r.min0 = dmin * small_float(static_cast<uint32_t>(m));
  const uint8_t* q = chunk + 16 + 32 * (j >> 1) + 8 * c;
  const int shift = 4 * (j & 1);
  const uint32_t w0 = (ld_u32_a2(q) >> shift) & 0x0f0f0f0fu, w1 = (ld_u32_a2(q + 4) >> shift) & 0x0f0f0f0fu;
  r.a[0] = small_pair<0, 1>(w0);
  r.a[1] = small_pair<2, 3>(w0);
  r.a[2] = small_pair<0, 1>(w1);
  r.a[3] = small_pair<2, 3>(w1);
}

// ---- the kernel ------------------------------------------------------------------------------

// One m16 tile's sub-chunk product for one token tile: f = Σ over the sub-chunk (fresh, so the
// row scale applies to it). Three short MMA chains by magnitude (hi·hi; the 2^-8 terms; the
// 2^-16 terms), added smallest first.
template <GgmlType T>
__device__ __forceinline__ void tile_product(const RowSub& r0, const RowSub& r8, const uint32_t (&xh)[4],
                                             const uint32_t (&xm)[4], const uint32_t (&xl)[4], float (&f)[4]) {
  float fh[4] = {0.0f, 0.0f, 0.0f, 0.0f}, fm[4] = {0.0f, 0.0f, 0.0f, 0.0f}, fl[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int s = 0; s < 2; ++s) {
    mma_bf16(fh, r0.a[2 * s], r8.a[2 * s], r0.a[2 * s + 1], r8.a[2 * s + 1], xh[2 * s], xh[2 * s + 1]);
    mma_bf16(fm, r0.a[2 * s], r8.a[2 * s], r0.a[2 * s + 1], r8.a[2 * s + 1], xm[2 * s], xm[2 * s + 1]);
    mma_bf16(fl, r0.a[2 * s], r8.a[2 * s], r0.a[2 * s + 1], r8.a[2 * s + 1], xl[2 * s], xl[2 * s + 1]);
    if constexpr (T == GgmlType::F16) {
      mma_bf16(fm, r0.alo[2 * s], r8.alo[2 * s], r0.alo[2 * s + 1], r8.alo[2 * s + 1], xh[2 * s], xh[2 * s + 1]);
      mma_bf16(fl, r0.alo[2 * s], r8.alo[2 * s], r0.alo[2 * s + 1], r8.alo[2 * s + 1], xm[2 * s], xm[2 * s + 1]);
    }
  }
#pragma unroll
  for (int e = 0; e < 4; ++e) f[e] = (fl[e] + fm[e]) + fh[e];
}

// Σx of the C fragment's two tokens (2c, 2c+1) over the sub-chunk's scale groups, from each lane's
// sum of its 8 values (token g): Q2_K the two 16-value halves (sx[token][half]), Q4_K all 32.
template <GgmlType T>
__device__ __forceinline__ void token_sums(float part, int c, float (&sx)[2][2]) {
  if constexpr (T == GgmlType::Q2_K) {
    const float half = part + __shfl_xor_sync(0xffffffffu, part, 1);  // lanes 4g + 2t, +1: half t of token g
#pragma unroll
    for (int k = 0; k < 2; ++k)
#pragma unroll
      for (int t = 0; t < 2; ++t) sx[k][t] = __shfl_sync(0xffffffffu, half, 8 * c + 4 * k + 2 * t);
  } else if constexpr (T == GgmlType::Q4_K) {
    float all = part + __shfl_xor_sync(0xffffffffu, part, 1);
    all = all + __shfl_xor_sync(0xffffffffu, all, 2);
#pragma unroll
    for (int k = 0; k < 2; ++k) sx[k][0] = __shfl_sync(0xffffffffu, all, 8 * c + 4 * k);
  }
}

// acc += the scaled sub-chunk sum f of C element e (row g + 8(e/2), token 2c + k, k = e % 2),
// written with explicit FMAs so that every instantiation rounds the same way.
template <GgmlType T>
__device__ __forceinline__ float accumulate(float acc, const RowSub& r, float f, const float (&sx)[2][2], int k) {
  if constexpr (T == GgmlType::Q2_K) return acc + fmaf(r.scale, f, -fmaf(r.min1, sx[k][1], r.min0 * sx[k][0]));
  if constexpr (T == GgmlType::Q4_K) return acc + fmaf(r.scale, f, -(r.min0 * sx[k][0]));
  return fmaf(r.scale, f, acc);
}

// The decoded sub-chunk of the warp's rows against the pass's token tiles (all NT when
// kFull, else the first n_tiles of NT): acc += the scaled sums.
template <GgmlType T, int NT, bool kFull, bool kPlanes>
__device__ __forceinline__ void sub_tiles(const RowSub (&rs)[4], const float* const (&xrow)[NT], int64_t col,
                                          uint32_t plane_bytes, int n_tiles, int c, float (&acc)[kMTiles][NT][4]) {
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    if (kFull || n < n_tiles) {
      uint32_t xh[4], xm[4], xl[4];
      float part = 0.0f;
      load_x<T, kPlanes>(xrow[n], col, plane_bytes, xh, xm, xl, part);
      float sx[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
      if constexpr (T == GgmlType::Q2_K || T == GgmlType::Q4_K) token_sums<T>(part, c, sx);
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        float f[4];
        tile_product<T>(rs[2 * mt], rs[2 * mt + 1], xh, xm, xl, f);
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mt][n][e] = accumulate<T>(acc[mt][n][e], rs[2 * mt + (e >> 1)], f[e], sx, e & 1);
      }
    }
  }
}

struct Pass {
  int64_t t0, end;  // entries [t0, min(t0 + 32, end)) of the token list
  int n_tiles;      // 8-token tiles in use
};

// One decoded sub-chunk j of the warp's rows against the pass's token tiles.
template <GgmlType T, int NT, bool kPlanes>
__device__ __forceinline__ void sub_chunk(const uint8_t* const (&seg)[4], int j, int c, const uint64_t* grid,
                                          const float* const (&xrow)[NT], int64_t col, uint32_t plane_bytes,
                                          const Pass& ps, float (&acc)[kMTiles][NT][4]) {
  RowSub rs[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) decode_sub<T>(seg[k], j, c, grid, rs[k]);
  if (ps.n_tiles == NT) sub_tiles<T, NT, true, kPlanes>(rs, xrow, col, plane_bytes, ps.n_tiles, c, acc);  // loads hoisted
  else sub_tiles<T, NT, false, kPlanes>(rs, xrow, col, plane_bytes, ps.n_tiles, c, acc);
}

// One warp's k part for one pass: acc[mt][n][e] over its chunks. Chunk counters, row offsets and
// ring stages are 32-bit and rotate (no 64-bit products or modulo per chunk); the 8-token tiling
// runs a full Q8_0 chunk (two sub-chunks) with constant offsets. first_pass: IQ2_XXS builds its
// grid table (a block barrier) once the first copies are in flight.
template <GgmlType T, int NT, bool kPlanes>
__device__ __forceinline__ void warp_part(const MatmulParams& p, const uint8_t* wbase, int64_t n_out, int64_t row0, int part, int n_parts,
                                          const Pass& ps, const float* const (&xrow)[NT], uint8_t* stages,
                                          uint64_t* grid, bool first_pass, float (&acc)[kMTiles][NT][4]) {
  using F = MmaFormat<T>;
  using L = Layout<T, NT>;
  constexpr int kStages = L::kStages;
  constexpr int kSubs = F::kValues / 32;
  const int lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int n_chunks = static_cast<int>((p.n_in + F::kValues - 1) / F::kValues);
  const int n_mine = part < n_chunks ? (n_chunks - part + n_parts - 1) / n_parts : 0;
  const uint32_t row_bytes = static_cast<uint32_t>(p.row_bytes);  // < 2^30 (mma_matmul_handles)
  const uint32_t chunk_step = static_cast<uint32_t>(n_parts) * F::kBytes;  // bytes between this part's chunks
  const uint32_t plane_bytes = 2u * static_cast<uint32_t>(p.n_in);  // kPlanes: one bf16 plane of a row
  // This lane copies row row0 + lane (clamped: padding rows read the last row, never written),
  // from the 16-byte aligned address below its start.
  const int64_t my_row = row0 + lane < n_out ? row0 + lane : n_out - 1;
  const uint8_t* my_src = wbase + static_cast<uint64_t>(my_row) * p.row_bytes;
  const uint32_t my_align = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(my_src) & 15u);
  const uint8_t* my_src16 = my_src - my_align;
  uint32_t issue_off = static_cast<uint32_t>(part) * F::kBytes;  // the next chunk to copy
  int issue_stage = 0;
  auto issue = [&]() {
    const uint32_t left = row_bytes - issue_off;
    const uint32_t bytes = left < uint32_t(F::kBytes) ? left : uint32_t(F::kBytes);
    const uint32_t a0 = (my_align + issue_off) & ~15u, a1 = (my_align + issue_off + bytes + 15u) & ~15u;
    uint8_t* dst = stages + issue_stage * L::kStageBytes + lane * L::kSeg;
    for (uint32_t a = a0; a < a1; a += 16) cp_async16(dst + (a - a0), my_src16 + a);
    issue_off += chunk_step;
    issue_stage = issue_stage + 1 == kStages ? 0 : issue_stage + 1;
  };
  // Local rows g + 8h' (h' = 0..3) of the warp tile: rows g, g+8 of m-tile 0 and of m-tile 1;
  // the alignment of each row's start within 16 bytes.
  uint32_t row_align[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int64_t r = row0 + g + 8 * k < n_out ? row0 + g + 8 * k : n_out - 1;
    row_align[k] = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(wbase + static_cast<uint64_t>(r) * p.row_bytes) & 15u);
  }
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < n_mine) issue();
    cp_async_commit();
  }
  if constexpr (T == GgmlType::IQ2_XXS)
    if (first_pass) build_iq2_tables(*reinterpret_cast<Iq2Tables*>(grid));
  uint32_t off = static_cast<uint32_t>(part) * F::kBytes;    // this chunk's bytes in the row
  int k_first = part * F::kValues;  // and its first column (n_in < 2^31)
  int stage_index = 0;
  for (int i = 0; i < n_mine; ++i) {
    if (i + kStages - 1 < n_mine) issue();
    cp_async_commit();
    cp_async_wait<kStages - 1>();
    __syncwarp();
    const uint8_t* stage = stages + stage_index * L::kStageBytes;
    const uint8_t* seg[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) seg[k] = stage + (g + 8 * k) * L::kSeg + ((row_align[k] + off) & 15u);
    const int n_left = static_cast<int>(p.n_in) - k_first;
    const int n_sub = (n_left < F::kValues ? n_left : F::kValues) / 32;
    if (NT == kSmallTiles && kSubs <= 2 && n_sub == kSubs) {  // a whole short chunk, constant offsets
#pragma unroll
      for (int j = 0; j < kSubs; ++j) sub_chunk<T, NT, kPlanes>(seg, j, c, grid, xrow, k_first + 32 * j + 8 * c, plane_bytes, ps, acc);
    } else {
#pragma unroll(NT == kSmallTiles && F::kValues > 32 ? 2 : 1)  // decode-sized passes: two sub-chunks interleaved
      for (int j = 0; j < n_sub; ++j) sub_chunk<T, NT, kPlanes>(seg, j, c, grid, xrow, k_first + 32 * j + 8 * c, plane_bytes, ps, acc);
    }
    __syncwarp();  // the stage is refilled by a later iteration's copy
    off += chunk_step;
    k_first += n_parts * F::kValues;
    stage_index = stage_index + 1 == kStages ? 0 : stage_index + 1;
  }
  cp_async_wait<0>();
  __syncwarp();
}

// The second matrix of a paired launch (mma_matmul_pair): same type, n_in, activations and token
// list as p; its row blocks follow p's (from first_block on). Unpaired: first_block = UINT_MAX.
struct SecondMatrix {
  const uint8_t* w = nullptr;
  int64_t n_out = 0;
  float* y = nullptr;
  int64_t y_stride = 0;
  uint64_t group_stride_bytes = 0;
  unsigned first_block = ~0u;
};
// The matrix this block's rows belong to and its row block within that matrix.
struct Matrix {
  const uint8_t* w;
  int64_t n_out;
  float* y;
  int64_t y_stride;
  uint64_t group_stride_bytes;
  unsigned row_block;
};
__device__ __forceinline__ Matrix block_matrix(const MatmulParams& p, const SecondMatrix& q) {
  if (blockIdx.y < q.first_block) return Matrix{p.w, p.n_out, p.y, p.y_stride, p.group_stride_bytes, blockIdx.y};
  return Matrix{q.w, q.n_out, q.y, q.y_stride, q.group_stride_bytes, blockIdx.y - q.first_block};
}

// kPlanes: the tokens' activations come as prepared planes (p.x_planes, x_group_rows == 0).
template <GgmlType T, int NT, bool kPlanes>
__global__ void __launch_bounds__(kThreads, min_blocks_for<T, NT>())
    mma_matmul_kernel(MatmulParams p, SecondMatrix q, int wsplit, int csplit) {
  constexpr int kPassTokens = 8 * NT;
  using L = Layout<T, NT>;
  extern __shared__ __align__(16) uint8_t mma_smem[];  // [kWarps][kStages][kWarpRows][kSeg]
  __shared__ __align__(16) uint64_t grid_s[T == GgmlType::IQ2_XXS ? sizeof(Iq2Tables) / 8 : 1];  // IQ2_XXS: Iq2Tables
  // blockIdx.x: the group (grouped mode) or the token slab (plain mode: passes x, x + gridDim.x, …);
  // blockIdx.y: the block of row tiles (of p, then of q); blockIdx.z: the k part within the cluster.
  const Matrix m = block_matrix(p, q);
  int64_t begin = 0, end = p.n_tokens, slab = 0, n_slabs = 1;
  const uint8_t* wbase = m.w;
  if (p.n_groups == 0) {
    slab = blockIdx.x;
    n_slabs = gridDim.x;
  } else {  // uniform for the cluster (same blockIdx.x): idle blocks leave before any barrier
    int64_t grp = blockIdx.x;
    if (p.group_list) {
      if (grp >= *p.group_count) return;
      grp = p.group_list[grp];
    }
    begin = p.group_offsets[grp];
    end = p.group_offsets[grp + 1];
    if (begin >= end) return;
    wbase += static_cast<uint64_t>(grp) * m.group_stride_bytes;
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int wpart = warp % wsplit;
  const int tiles_per_block = kWarps / wsplit;
  const int64_t row0 = (static_cast<int64_t>(m.row_block) * tiles_per_block + warp / wsplit) * kWarpRows;
  const int part = static_cast<int>(blockIdx.z) * wsplit + wpart, n_parts = wsplit * csplit;
  // Padding warps past n_out read the last group's columns (their results are never written).
  const int64_t x_col = p.x_group_rows > 0 ? ((row0 < m.n_out ? row0 : m.n_out - 1) / p.x_group_rows) * p.n_in : 0;
  uint8_t* stages = mma_smem + warp * L::kWarpBytes;
  float* red = reinterpret_cast<float*>(stages);  // [kMTiles·NT·4][32], after the k loop
  const bool split = n_parts > 1;
  cg::cluster_group cluster = cg::this_cluster();
  const unsigned rank = csplit > 1 ? cluster.block_rank() : 0;

  const int64_t first_t0 = begin + slab * kPassTokens;
  for (int64_t t0 = first_t0; t0 < end; t0 += n_slabs * kPassTokens) {
    Pass ps{t0, end, static_cast<int>(((end - t0 < kPassTokens ? end - t0 : kPassTokens) + 7) / 8)};
    const float* xrow[NT];
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      int64_t i = t0 + 8 * n + g;
      if (i >= end) i = t0;
      const int64_t xr = p.x_rows ? p.x_rows[i] : i;
      if constexpr (kPlanes)  // the row's planes, read by load_x as bytes
        xrow[n] = reinterpret_cast<const float*>(p.x_planes + xr * plane_row_bytes(p.n_in));
      else
        xrow[n] = p.x + xr * p.x_stride + x_col;
    }
    float acc[kMTiles][NT][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int n = 0; n < NT; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mt][n][e] = 0.0f;
    warp_part<T, NT, kPlanes>(p, wbase, m.n_out, row0, part, n_parts, ps, xrow, stages, grid_s, t0 == first_t0, acc);

    // Split-K: the warps of a row tile in order, then the blocks of the cluster in rank order.
    if (split) {
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) red[((mt * NT + n) * 4 + e) * 32 + lane] = acc[mt][n][e];
      __syncthreads();
      if (wpart == 0) {
        for (int q = 1; q < wsplit; ++q) {
          const float* other = reinterpret_cast<const float*>(mma_smem + (warp + q) * L::kWarpBytes);
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int n = 0; n < NT; ++n)
#pragma unroll
              for (int e = 0; e < 4; ++e) acc[mt][n][e] += other[((mt * NT + n) * 4 + e) * 32 + lane];
        }
      }
      if (csplit > 1) {
        __syncthreads();  // the other warps' partials are read: the block total may overwrite this warp's
        if (wpart == 0)
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
            for (int n = 0; n < NT; ++n)
#pragma unroll
              for (int e = 0; e < 4; ++e) red[((mt * NT + n) * 4 + e) * 32 + lane] = acc[mt][n][e];
        cluster.sync();
        if (rank == 0 && wpart == 0) {
          for (int q = 1; q < csplit; ++q) {
            const float* other = cluster.map_shared_rank(red, q);
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
              for (int n = 0; n < NT; ++n)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[mt][n][e] += other[((mt * NT + n) * 4 + e) * 32 + lane];
          }
        }
      }
    }
    if (rank == 0 && wpart == 0) {
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
        for (int n = 0; n < NT; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int64_t row = row0 + 16 * mt + g + 8 * (e >> 1);
            const int64_t i = t0 + 8 * n + 2 * c + (e & 1);
            if (row < m.n_out && i < end) {
              const int64_t yr = p.y_rows ? p.y_rows[i] : i;
              m.y[yr * m.y_stride + row] = acc[mt][n][e];
            }
          }
    }
    // The stages (holding the partials) are refilled by the next pass.
    if (csplit > 1) cluster.sync();
    else if (split) __syncthreads();
  }
}

// How the k range is split (from the shape alone, never the batch: batch invariance): parts
// double while the warps stay under target_warps, each part keeps >= min_chunks chunks, and a part
// fits in kWarps x max_cluster. The rule depends on the number of 32-row tiles (H200 sweep,
// docs/PERFORMANCE.md "CUDA products"):
//   * <= 2 row tiles (the hc_*_fn products, 24 rows): 4096,1,16: up to 64 parts in 16-block
//     clusters (latency-bound, one warp per part; hc_attn_fn 22.1 -> 13.8 us at 1 token, 114 ->
//     125 us at 2048 tokens; the router, 8 tiles, gains 6% at 1 token but loses 63% at 2048);
//   * >= 2048 row tiles (the output head): 4096,1,8, i.e. 2 parts (335 -> 311 us at 1 token,
//     403 -> 368 at 8, +1.4% at 2048 tokens);
//   * everything else 2048,2,8 (more parts lose: up to 1.9x at 2048 tokens), except grouped calls
//     (routed experts): 2048,4,8, i.e. >= 4 chunks per part (IQ2_XXS gate/up 8 -> 4 parts, Q2_K
//     down 4 -> 2: 35.4 -> 33.0 us at 1 token, 197.5 -> 180.5 at 8; a property of the matrix and
//     the mode, never of the batch).
// DS4_MMA_SPLIT = "target_warps,min_chunks,max_cluster" replaces the rule for every shape (tuning
// runs; read once per process).
struct SplitRule {
  int64_t target_warps = 2048;
  int64_t min_chunks = 2;
  int max_cluster = 8;  // 16: non-portable clusters where the GPU schedules them
};
constexpr int64_t kFewRowTiles = 2, kHeadRowTiles = 2048;
constexpr int kMaxCluster = 16;  // the largest cluster any rule asks for
SplitRule shape_rule(int64_t row_tiles, bool grouped) {
  if (row_tiles <= kFewRowTiles) return SplitRule{4096, 1, 16};
  if (row_tiles >= kHeadRowTiles) return SplitRule{4096, 1, 8};
  if (grouped) return SplitRule{2048, 4, 8};
  return SplitRule{};
}
// The DS4_MMA_SPLIT override, if set (max_cluster 0 when not).
SplitRule read_split_override() {
  SplitRule r{0, 0, 0};
  const char* e = std::getenv("DS4_MMA_SPLIT");
  if (e && *e) {
    long long w = 0, m = 0;
    int c = 0;
    if (std::sscanf(e, "%lld,%lld,%d", &w, &m, &c) != 3 || w < 1 || m < 1 || (c != 1 && c != 2 && c != 4 && c != 8 && c != 16))
      launch_fail("mma_matmul", std::string("DS4_MMA_SPLIT must be target_warps,min_chunks,max_cluster (1..16): ") + e,
                  __FILE__, __LINE__);
    r = SplitRule{w, m, c};
  }
  return r;
}
const SplitRule& split_override() {
  static const SplitRule rule = read_split_override();
  return rule;
}

struct Split {
  int wsplit = 1, csplit = 1;
};
// format_cap: the largest cluster the format's kernels can run (format_max_cluster).
Split choose_split(int64_t n_out, int64_t n_chunks, bool grouped, int format_cap) {
  const int64_t row_tiles = (n_out + kWarpRows - 1) / kWarpRows;
  const SplitRule r = split_override().max_cluster > 0 ? split_override() : shape_rule(row_tiles, grouped);
  const int max_cluster = r.max_cluster < format_cap ? r.max_cluster : format_cap;
  int parts = 1;
  while (parts < kWarps * max_cluster && row_tiles * parts < r.target_warps && n_chunks >= 2 * r.min_chunks * parts)
    parts *= 2;
  Split s;
  s.wsplit = parts < kWarps ? parts : kWarps;
  s.csplit = parts / s.wsplit;
  return s;
}

template <GgmlType T, int NT, bool kPlanes>
void opt_in_kernel(int max_cluster) {
  DS4_CUDA_CHECK(cudaFuncSetAttribute(mma_matmul_kernel<T, NT, kPlanes>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      Layout<T, NT>::kSmemBytes));
  if (max_cluster > 8)
    DS4_CUDA_CHECK(cudaFuncSetAttribute(mma_matmul_kernel<T, NT, kPlanes>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
}
template <GgmlType T, int NT>
void opt_in(int max_cluster) {
  opt_in_kernel<T, NT, false>(max_cluster);
  if constexpr (reads_planes<T>()) opt_in_kernel<T, NT, true>(max_cluster);
}

// The largest cluster of this format's kernels (both token tilings: the split must not depend on
// which one runs): the rules' (16, or the override's), unless the GPU cannot schedule a 16-block
// cluster of the larger one.
template <GgmlType T>
int format_max_cluster() {
  static const int cap = [] {
    const int want = split_override().max_cluster > 0 ? split_override().max_cluster : kMaxCluster;
    opt_in<T, kWideTiles>(want);
    opt_in<T, kLargeTiles>(want);
    opt_in<T, kMidTiles>(want);
    opt_in<T, kSmallTiles>(want);
    if (want <= 8) return want;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(1, 1, static_cast<unsigned>(want));
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = Layout<T, kLargeTiles>::kSmemBytes;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 1;
    attr[0].val.clusterDim.y = 1;
    attr[0].val.clusterDim.z = static_cast<unsigned>(want);
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    int clusters = 0;
    const cudaError_t err = cudaOccupancyMaxActiveClusters(&clusters, mma_matmul_kernel<T, kLargeTiles, false>, &cfg);
    if (err != cudaSuccess) (void)cudaGetLastError();
    return err == cudaSuccess && clusters >= 1 ? want : 8;
  }();
  return cap;
}

// Token tiles per pass for a call (every tiling computes every call correctly, with the same
// bits; this only picks the faster one).
// Plain mode: 1 up to small tokens, 2 up to mid, 8 above wide, else 4 (H200, full-size q2: the
// 2048-token prefill 1683 -> 1605 ms, the 256-token decode step 325.6 -> 318.9 ms with the 64-token
// tiling above 64 tokens).
// Grouped mode: 1 through a list of <= 48 groups (<= 8 tokens x 6 routes as the engine sizes
// grid_groups) or when the entries (n_tokens, when the caller gives it) average <= group_mean per
// group (routed experts up to ~680 tokens: a group re-runs its 8-token pass for more tokens, which
// beats the 32-token tiling's lower occupancy while groups are small; H200, 256 tokens x 6 routes
// over 256 experts: IQ2_XXS 1451 -> 1111 us, Q2_K 1428 -> 1099, Q4_K 2657 -> 1712); 8 when they
// average more than group_wide (at 48 per group, a 2048-token prefill's routed experts, the
// 64-token tiling was slower: 1794 ms against 1683; above 128 each group runs at least two whole
// 64-token passes); else 4.
struct TileRule {
  int64_t small = 8, mid = 16, group_mean = 16, wide = 64, group_wide = 128;
};
// DS4_MMA_TILES = "small,mid,group_mean[,wide,group_wide]" replaces the thresholds (tuning runs;
// read once per process; "8,8,0" is the rule before the 16-token tiling and the entry-count hint,
// a huge wide and group_wide the rule before the 64-token tiling).
TileRule read_tile_rule() {
  TileRule r;
  const char* e = std::getenv("DS4_MMA_TILES");
  if (e && *e) {
    long long a = 0, b = 0, c = 0, d = r.wide, f = r.group_wide;
    const int n = std::sscanf(e, "%lld,%lld,%lld,%lld,%lld", &a, &b, &c, &d, &f);
    if (n == 3) d = std::max(d, b), f = std::max(f, c);  // the three-number form keeps the default wide tilings
    if ((n != 3 && n != 5) || a < 0 || b < a || c < 0 || d < b || f < c)
      launch_fail("mma_matmul",
                  std::string("DS4_MMA_TILES must be small,mid,group_mean[,wide,group_wide] (0 <= small <= mid <= wide, "
                              "group_mean <= group_wide): ") + e,
                  __FILE__, __LINE__);
    r = TileRule{a, b, c, d, f};
  }
  return r;
}
int tiles_for(const MatmulParams& p) {
  static const TileRule rule = read_tile_rule();
  if (p.n_groups == 0)
    return p.n_tokens <= rule.small ? kSmallTiles
           : p.n_tokens <= rule.mid  ? kMidTiles
           : p.n_tokens > rule.wide  ? kWideTiles
                                     : kLargeTiles;
  if (p.group_list != nullptr && p.grid_groups <= 48) return kSmallTiles;
  if (p.n_tokens > 0 && p.n_tokens <= rule.group_mean * p.n_groups) return kSmallTiles;
  return p.n_tokens > rule.group_wide * p.n_groups ? kWideTiles : kLargeTiles;
}

template <GgmlType T>
Split split_for(const MatmulParams& p) {
  const int64_t n_chunks = (p.n_in + MmaFormat<T>::kValues - 1) / MmaFormat<T>::kValues;
  return choose_split(p.n_out, n_chunks, p.n_groups > 0, format_max_cluster<T>());
}
int64_t row_blocks(int64_t n_out, const Split& s) {
  const int64_t rows_per_block = int64_t(kWarpRows) * (kWarps / s.wsplit);
  return (n_out + rows_per_block - 1) / rows_per_block;
}

// p alone, or p and then b (paired: b's row blocks follow p's; same split, checked by the caller).
template <GgmlType T, int NT>
void launch(const MatmulParams& p, const MatmulParams* b, cudaStream_t stream) {
  using L = Layout<T, NT>;
  constexpr int kPassTokens = 8 * NT;
  const Split s = split_for<T>(p);
  SecondMatrix q;
  int64_t blocks_y = row_blocks(p.n_out, s);
  if (b) {
    q = SecondMatrix{b->w, b->n_out, b->y, b->y_stride, b->group_stride_bytes, static_cast<unsigned>(blocks_y)};
    blocks_y += row_blocks(b->n_out, s);
  }
  cudaLaunchConfig_t cfg = {};
  // Plain mode: one token slab per pass (8 · NT tokens), all in parallel (the slabs' passes are independent).
  const int64_t slabs = p.n_groups > 0 ? (p.group_list ? p.grid_groups : p.n_groups) : (p.n_tokens + kPassTokens - 1) / kPassTokens;
  cfg.gridDim = dim3(static_cast<unsigned>(slabs), static_cast<unsigned>(blocks_y), static_cast<unsigned>(s.csplit));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = L::kSmemBytes;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = 1;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = static_cast<unsigned>(s.csplit);
  cfg.attrs = attr;
  cfg.numAttrs = s.csplit > 1 ? 1 : 0;
  if constexpr (reads_planes<T>())
    if (p.x_planes) {
      DS4_CUDA_CHECK(cudaLaunchKernelEx(&cfg, mma_matmul_kernel<T, NT, true>, p, q, s.wsplit, s.csplit));
      return;
    }
  DS4_CUDA_CHECK(cudaLaunchKernelEx(&cfg, mma_matmul_kernel<T, NT, false>, p, q, s.wsplit, s.csplit));
}

template <GgmlType T>
void launch_format(const MatmulParams& p, const MatmulParams* b, cudaStream_t stream) {
  switch (tiles_for(p)) {
    case kSmallTiles: launch<T, kSmallTiles>(p, b, stream); break;
    case kMidTiles: launch<T, kMidTiles>(p, b, stream); break;
    case kWideTiles: launch<T, kWideTiles>(p, b, stream); break;
    default: launch<T, kLargeTiles>(p, b, stream);
  }
}

// One launch for a and b when their k splits agree (a property of the two shapes; the row
// blocks must fit blockIdx.y); false: nothing launched.
template <GgmlType T>
bool launch_pair(const MatmulParams& a, const MatmulParams& b, cudaStream_t stream) {
  const Split sa = split_for<T>(a), sb = split_for<T>(b);
  if (sa.wsplit != sb.wsplit || sa.csplit != sb.csplit || row_blocks(a.n_out, sa) + row_blocks(b.n_out, sb) > 65535)
    return false;
  launch_format<T>(a, &b, stream);
  return true;
}

// Same activations, token list and format: what one launch needs of the two products.
bool shares_inputs(const MatmulParams& a, const MatmulParams& b) {
  return a.type == b.type && a.n_in == b.n_in && a.row_bytes == b.row_bytes && a.x == b.x && a.x_stride == b.x_stride &&
         a.n_tokens == b.n_tokens && a.x_group_rows == 0 && b.x_group_rows == 0 && a.n_groups == b.n_groups &&
         a.group_offsets == b.group_offsets && a.group_list == b.group_list && a.group_count == b.group_count &&
         a.grid_groups == b.grid_groups && a.x_rows == b.x_rows && a.y_rows == b.y_rows && a.x_planes == b.x_planes;
}

// DS4_MMA_PAIRS=0 turns paired launches off (A/B runs; read once per process).
bool pairs_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("DS4_MMA_PAIRS");
    return !(e && std::string(e) == "0");
  }();
  return on;
}

}  // namespace

bool mma_matmul_handles(const MatmulParams& p) {
  switch (p.type) {
    case GgmlType::Q8_0: case GgmlType::F16: case GgmlType::IQ2_XXS: case GgmlType::Q2_K: case GgmlType::Q4_K:
      break;
    default:
      return false;
  }
  // F16 chunks are read as 16-byte words: rows and matrices 16-byte aligned (else the CUDA-core
  // kernel runs: a property of the matrix, never of the batch).
  if (p.type == GgmlType::F16 &&
      ((reinterpret_cast<uintptr_t>(p.w) | p.row_bytes | (p.n_groups > 0 ? p.group_stride_bytes : 0)) & 15u) != 0)
    return false;
  // Row blocks are blockIdx.y (≤ 65535 blocks of ≥ 32 rows); row offsets are 32-bit.
  if (p.row_bytes >= (uint64_t(1) << 30)) return false;
  return (p.x_group_rows == 0 || p.x_group_rows % kWarpRows == 0) && p.n_out <= int64_t(65535) * kWarpRows;
}

void mma_matmul(const MatmulParams& p, cudaStream_t stream) {
  switch (p.type) {
    case GgmlType::Q8_0: launch_format<GgmlType::Q8_0>(p, nullptr, stream); break;
    case GgmlType::F16: launch_format<GgmlType::F16>(p, nullptr, stream); break;
    case GgmlType::IQ2_XXS: launch_format<GgmlType::IQ2_XXS>(p, nullptr, stream); break;
    case GgmlType::Q2_K: launch_format<GgmlType::Q2_K>(p, nullptr, stream); break;
    case GgmlType::Q4_K: launch_format<GgmlType::Q4_K>(p, nullptr, stream); break;
    default: launch_fail("mma_matmul", "unsupported weight type", __FILE__, __LINE__);
  }
  DS4_CUDA_LAUNCH_CHECK("mma_matmul_kernel");
}

bool mma_matmul_pair(const MatmulParams& a, const MatmulParams& b, cudaStream_t stream) {
  if (!pairs_enabled() || !shares_inputs(a, b)) return false;
  bool launched = false;
  switch (a.type) {
    case GgmlType::Q8_0: launched = launch_pair<GgmlType::Q8_0>(a, b, stream); break;
    case GgmlType::F16: launched = launch_pair<GgmlType::F16>(a, b, stream); break;
    case GgmlType::IQ2_XXS: launched = launch_pair<GgmlType::IQ2_XXS>(a, b, stream); break;
    case GgmlType::Q2_K: launched = launch_pair<GgmlType::Q2_K>(a, b, stream); break;
    case GgmlType::Q4_K: launched = launch_pair<GgmlType::Q4_K>(a, b, stream); break;
    default: break;
  }
  if (launched) DS4_CUDA_LAUNCH_CHECK("mma_matmul_kernel (pair)");
  return launched;
}

int64_t x_plane_row_bytes(int64_t n_in) { return plane_row_bytes(n_in); }

void split_x_planes(const float* x, int64_t x_stride, int64_t n_rows, int64_t n_in, uint8_t* planes, cudaStream_t stream) {
  const char* k = "cuda::split_x_planes";
  DS4_LAUNCH_REQUIRE(n_in > 0 && n_in % 32 == 0 && n_rows >= 0, k, "n_in must be a positive multiple of 32");
  DS4_LAUNCH_REQUIRE(((reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(planes)) & 15u) == 0 && x_stride % 4 == 0,
                     k, "x rows and planes must be 16-byte aligned");
  const int64_t threads = n_rows * (n_in / 8);
  if (threads == 0) return;
  constexpr int kBlock = 256;
  split_x_planes_kernel<<<static_cast<unsigned>((threads + kBlock - 1) / kBlock), kBlock, 0, stream>>>(
      x, x_stride, n_rows, n_in, planes, x_plane_row_bytes(n_in));
  DS4_CUDA_LAUNCH_CHECK("split_x_planes_kernel");
}

}  // namespace ds4::cuda
