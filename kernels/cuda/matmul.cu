// Dequantising mat-vec / mat-mat kernels of matmul.h: Q8_0, Q2_K, Q4_K, IQ2_XXS and F16 go to the
// tensor-core kernel (mma_matmul.cu); this file keeps the CUDA-core kernel for F32 and BF16 (and a
// grouped output projection whose groups are not multiples of 32 rows), and dequant_rows.
// CUDA-core kernel layout: a block of 8 warps
// covers 8/split output rows; the `split` warps of a row share its 32-unit chunks round robin
// (split depends only on the matrix shape, never on the batch). A warp streams its chunks into a
// 4-stage shared-memory ring with asynchronous aligned 16-byte copies (3 chunks in flight), then
// every lane decodes one 32-value unit and accumulates it against up to 8 tokens. (Spreading a
// unit over 8 lanes so that the activation loads coalesce measured slower on the H200.) Lane sums
// are reduced with a fixed butterfly and the split parts are added in order, so each token's
// result is the same whatever else is in the batch.
#include "kernels/cuda/matmul.h"

#include <cstdlib>
#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/mma_matmul.h"
#include "kernels/cuda/quant_decode.cuh"

namespace ds4::cuda {
namespace {

__device__ const uint64_t kIq2xxsGrid[256] = {
#include "kernels/iq2xxs_grid.inc"
};

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kTile = 8;  // tokens per pass over a row

// Geometry of one 32-unit chunk of a row in format T.
template <GgmlType T>
struct Chunk {
  using F = UnitFormat<T>;
  static constexpr int kBytes = 32 / F::kUnits * F::kBytes;
  // A chunk at any 2-byte alignment spans at most kBytes + 30 bytes of aligned 16-byte words.
  static constexpr int kStageBytes = (kBytes + 30 + 15) / 16 * 16;
  // Pipeline depth: 4 stages per warp (3 chunks in flight), the block's stages in dynamic smem.
  static constexpr int kStages = 4;
  static constexpr int kSmemBytes = kWarps * kStages * kStageBytes;
};

template <GgmlType T>
__device__ __forceinline__ void load_grid(uint64_t* grid_s) {
  if constexpr (T == GgmlType::IQ2_XXS) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) grid_s[i] = kIq2xxsGrid[i];
    __syncthreads();
  }
}

// Asynchronous 16-byte copies global → shared (cp.async, L1 bypassed: weights are streamed).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Starts copying the aligned 16-byte words that cover bytes [src, src + bytes) into stage.
__device__ __forceinline__ void issue_chunk(const uint8_t* src, int bytes, int lane, uint8_t* stage) {
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(src) & ~uintptr_t(15);
  const uintptr_t a1 = (reinterpret_cast<uintptr_t>(src) + bytes + 15) & ~uintptr_t(15);
  const int n_vec = static_cast<int>((a1 - a0) / 16);
  for (int i = lane; i < n_vec; i += 32) cp_async16(stage + 16 * i, reinterpret_cast<const uint8_t*>(a0) + 16 * i);
}

// acc[t] += Σ_i w[i] · x_t[i] for the unit's 32 values, tokens t < nt.
__device__ __forceinline__ void dot_unit(const float* w, const float* const* xp, int64_t col, int nt, float* acc) {
#pragma unroll
  for (int t = 0; t < kTile; ++t) {
    if (t < nt) {
      const float4* xv = reinterpret_cast<const float4*>(xp[t] + col);
      float a = acc[t];
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const float4 x = __ldg(xv + k);
        a = fmaf(w[4 * k], x.x, a);
        a = fmaf(w[4 * k + 1], x.y, a);
        a = fmaf(w[4 * k + 2], x.z, a);
        a = fmaf(w[4 * k + 3], x.w, a);
      }
      acc[t] = a;
    }
  }
}

// One warp's pass over its share of a row for one token tile: its chunks (part, part + split, …)
// stream through kStages shared-memory stages, kStages − 1 copies in flight ahead of the decode.
template <GgmlType T>
__device__ __forceinline__ void row_tile(const uint8_t* wrow, uint64_t row_bytes, int64_t n_units, int part, int split,
                                         const float* const* xp, int nt, uint8_t* stages, const uint64_t* grid,
                                         float* acc) {
  using F = UnitFormat<T>;
  using C = Chunk<T>;
  const int lane = threadIdx.x & 31;
  const int64_t n_chunks = (n_units + 31) / 32;
  const int64_t n_mine = part < n_chunks ? (n_chunks - part + split - 1) / split : 0;
  auto chunk_src = [&](int64_t i) { return wrow + (part + i * split) * C::kBytes; };
  auto chunk_bytes = [&](int64_t i) {
    const uint64_t left = row_bytes - static_cast<uint64_t>(part + i * split) * C::kBytes;
    return static_cast<int>(left < uint64_t(C::kBytes) ? left : uint64_t(C::kBytes));
  };
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < n_mine) issue_chunk(chunk_src(s), chunk_bytes(s), lane, stages + s * C::kStageBytes);
    cp_async_commit();
  }
  for (int64_t i = 0; i < n_mine; ++i) {
    const int64_t next = i + C::kStages - 1;
    if (next < n_mine) issue_chunk(chunk_src(next), chunk_bytes(next), lane, stages + (next % C::kStages) * C::kStageBytes);
    cp_async_commit();
    cp_async_wait<C::kStages - 1>();  // chunk i has landed (this lane's copies) ...
    __syncwarp();                     // ... and every lane's
    const uint8_t* stage = stages + (i % C::kStages) * C::kStageBytes;
    const int offset = static_cast<int>(reinterpret_cast<uintptr_t>(chunk_src(i)) & 15);
    const int64_t u = (part + i * split) * 32 + lane;
    if (u < n_units) {
      float w[32];
      decode_unit<T>(stage + offset + (lane / F::kUnits) * F::kBytes, lane % F::kUnits, w, grid);
      dot_unit(w, xp, u * kUnitValues, nt, acc);
    }
    __syncwarp();  // the stage is refilled by the next iteration's copy
  }
}

template <GgmlType T>
__global__ void __launch_bounds__(kThreads) matmul_kernel(MatmulParams p, int split) {
  extern __shared__ __align__(16) uint8_t matmul_stages[];  // [kWarps][kStages][kStageBytes]
  __shared__ float partial[kWarps][kTile];
  __shared__ uint64_t grid_s[T == GgmlType::IQ2_XXS ? 256 : 1];
  int64_t begin = 0, end = p.n_tokens;
  const uint8_t* wbase = p.w;
  if (p.n_groups > 0) {  // uniform for the block: idle blocks leave before any barrier
    int64_t g = blockIdx.y;
    if (p.group_list) {
      if (g >= *p.group_count) return;
      g = p.group_list[g];
    }
    begin = p.group_offsets[g];
    end = p.group_offsets[g + 1];
    if (begin >= end) return;
    wbase += static_cast<uint64_t>(g) * p.group_stride_bytes;
  }
  load_grid<T>(grid_s);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kWarps / split) + warp / split;
  const int part = warp % split;
  const bool active = row < p.n_out;
  const uint8_t* wrow = wbase + static_cast<uint64_t>(active ? row : 0) * p.row_bytes;
  const int64_t n_units = p.n_in / kUnitValues;
  const int64_t x_col = p.x_group_rows > 0 ? (row / p.x_group_rows) * p.n_in : 0;

  for (int64_t tile = begin; tile < end; tile += kTile) {
    const int nt = static_cast<int>(end - tile < kTile ? end - tile : kTile);
    const float* xp[kTile];
#pragma unroll
    for (int t = 0; t < kTile; ++t) {
      const int64_t i = tile + (t < nt ? t : 0);
      const int64_t xr = p.x_rows ? p.x_rows[i] : i;
      xp[t] = p.x + xr * p.x_stride + x_col;
    }
    float acc[kTile];
#pragma unroll
    for (int t = 0; t < kTile; ++t) acc[t] = 0.0f;
    uint8_t* stages = matmul_stages + warp * Chunk<T>::kStages * Chunk<T>::kStageBytes;
    if (active) row_tile<T>(wrow, p.row_bytes, n_units, part, split, xp, nt, stages, grid_s, acc);
#pragma unroll
    for (int t = 0; t < kTile; ++t)
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], off);
    if (split > 1) {
      if (lane == 0)
#pragma unroll
        for (int t = 0; t < kTile; ++t) partial[warp][t] = acc[t];
      __syncthreads();
      if (part == 0 && lane == 0)
#pragma unroll
        for (int t = 0; t < kTile; ++t) {
          float s = partial[warp][t];
          for (int q = 1; q < split; ++q) s += partial[warp + q][t];
          acc[t] = s;
        }
      __syncthreads();
    }
    if (active && part == 0 && lane == 0) {
#pragma unroll
      for (int t = 0; t < kTile; ++t) {
        if (t < nt) {
          const int64_t yr = p.y_rows ? p.y_rows[tile + t] : tile + t;
          p.y[yr * p.y_stride + row] = acc[t];
        }
      }
    }
  }
}

template <GgmlType T>
__global__ void dequant_rows_kernel(DequantRowsParams p) {
  __shared__ uint64_t grid_s[T == GgmlType::IQ2_XXS ? 256 : 1];
  load_grid<T>(grid_s);
  const int64_t i = blockIdx.x;
  const uint8_t* row = p.w + static_cast<uint64_t>(p.rows[i]) * p.row_bytes;
  float* out = p.out + i * p.out_stride;
  for (int64_t u = threadIdx.x; u < p.n_in / kUnitValues; u += blockDim.x) {
    float w[32];
    decode_row_unit<T>(row, u, w, grid_s);
    for (int c = 0; c < p.copies; ++c)
#pragma unroll
      for (int k = 0; k < 32; ++k) out[c * p.n_in + u * 32 + k] = w[k];
  }
}

int choose_split(int64_t n_out, int64_t n_chunks, bool grouped) {
  // Enough warps to cover every SM several times over; never more parts than chunks.
  int split = 1;
  if (grouped) return split;
  while (split < kWarps && n_out * split < 2048 && n_chunks >= 2 * split) split *= 2;
  return split;
}

template <GgmlType T>
void launch_matmul(const MatmulParams& p, int split, dim3 grid, cudaStream_t stream) {
  static bool smem_set = false;  // opt in to > 48 KB of dynamic shared memory once per format
  if (!smem_set) {
    DS4_CUDA_CHECK(cudaFuncSetAttribute(matmul_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, Chunk<T>::kSmemBytes));
    smem_set = true;
  }
  matmul_kernel<T><<<grid, kThreads, Chunk<T>::kSmemBytes, stream>>>(p, split);
}

template <GgmlType T>
void launch_dequant(const DequantRowsParams& p, cudaStream_t stream) {
  dequant_rows_kernel<T><<<static_cast<unsigned>(p.n_rows), 128, 0, stream>>>(p);
}

// Expands CALL(T) for the runtime weight type (the kernels are templates over the format).
#define DS4_DISPATCH_TYPE(type, CALL)                                                              \
  switch (type) {                                                                                 \
    case GgmlType::F32: CALL(GgmlType::F32); break;                                               \
    case GgmlType::F16: CALL(GgmlType::F16); break;                                               \
    case GgmlType::BF16: CALL(GgmlType::BF16); break;                                             \
    case GgmlType::Q8_0: CALL(GgmlType::Q8_0); break;                                             \
    case GgmlType::Q2_K: CALL(GgmlType::Q2_K); break;                                             \
    case GgmlType::Q4_K: CALL(GgmlType::Q4_K); break;                                             \
    case GgmlType::IQ2_XXS: CALL(GgmlType::IQ2_XXS); break;                                       \
    default: launch_fail("dispatch", "unsupported weight type", __FILE__, __LINE__);               \
  }

std::string shape_text(int64_t n_in, int64_t n_out, GgmlType type) {
  return std::string(ggml_type_name(type)) + " [" + std::to_string(n_in) + ", " + std::to_string(n_out) + "]";
}

// DS4_CUDA_CORE_PRODUCTS=1 sends every product to the CUDA-core kernel (A/B checks of a whole
// model against the tensor-core path); read once.
bool cuda_cores_forced() {
  static const bool forced = [] {
    const char* v = std::getenv("DS4_CUDA_CORE_PRODUCTS");
    return v && *v && *v != '0';
  }();
  return forced;
}

}  // namespace

bool cuda_type_supported(GgmlType type) {
  switch (type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16: case GgmlType::Q8_0:
    case GgmlType::Q2_K: case GgmlType::Q4_K: case GgmlType::IQ2_XXS:
      return true;
    default:
      return false;
  }
}

namespace {

// Aborts on an invalid p; false when there is nothing to compute.
bool validate(const MatmulParams& p) {
  const char* k = "cuda::matmul";
  DS4_LAUNCH_REQUIRE(cuda_type_supported(p.type), k, "unsupported weight type " + std::string(ggml_type_name(p.type)));
  DS4_LAUNCH_REQUIRE(p.n_in > 0 && p.n_in % kUnitValues == 0, k, "n_in must be a positive multiple of 32: " + shape_text(p.n_in, p.n_out, p.type));
  const auto row_bytes = ggml_row_bytes(p.type, static_cast<uint64_t>(p.n_in));
  DS4_LAUNCH_REQUIRE(row_bytes && *row_bytes == p.row_bytes, k, "row_bytes does not match " + shape_text(p.n_in, p.n_out, p.type));
  DS4_LAUNCH_REQUIRE(p.n_out > 0 && p.w && p.x && p.y, k, "null pointer or empty output: " + shape_text(p.n_in, p.n_out, p.type));
  DS4_LAUNCH_REQUIRE(reinterpret_cast<uintptr_t>(p.x) % 16 == 0 && p.x_stride % 4 == 0, k, "x rows must be 16-byte aligned");
  DS4_LAUNCH_REQUIRE(reinterpret_cast<uintptr_t>(p.w) % 2 == 0, k, "weights must be 2-byte aligned");
  DS4_LAUNCH_REQUIRE(p.x_group_rows >= 0 && p.n_tokens >= 0 && p.n_groups >= 0 && p.n_groups <= 65535, k, "negative count");
  if (p.x_planes)
    DS4_LAUNCH_REQUIRE(p.x_group_rows == 0 && reinterpret_cast<uintptr_t>(p.x_planes) % 16 == 0, k,
                       "x_planes needs x_group_rows == 0 and 16-byte alignment");
  if (p.n_groups > 0)
    DS4_LAUNCH_REQUIRE(p.group_offsets && p.x_rows && p.y_rows, k, "grouped mode needs offsets and row lists");
  if (p.group_list)
    DS4_LAUNCH_REQUIRE(p.group_count && p.grid_groups > 0 && p.grid_groups <= p.n_groups, k,
                       "group_list needs group_count and 0 < grid_groups <= n_groups");
  return p.n_groups > 0 || p.n_tokens > 0;
}

bool on_tensor_cores(const MatmulParams& p) { return !p.cuda_cores && !cuda_cores_forced() && mma_matmul_handles(p); }

}  // namespace

bool reads_x_planes(const MatmulParams& p) {
  const bool expert_format = p.type == GgmlType::IQ2_XXS || p.type == GgmlType::Q2_K;  // mma_matmul.cu reads_planes
  return expert_format && p.x_group_rows == 0 && on_tensor_cores(p);
}

void matmul(const MatmulParams& p, cudaStream_t stream) {
  if (!validate(p)) return;
  if (on_tensor_cores(p)) {
    mma_matmul(p, stream);
    return;
  }
  const int64_t n_chunks = (p.n_in / kUnitValues + 31) / 32;
  const int split = choose_split(p.n_out, n_chunks, p.n_groups > 0);
  const int64_t rows_per_block = kWarps / split;
  const dim3 grid(static_cast<unsigned>((p.n_out + rows_per_block - 1) / rows_per_block),
                  static_cast<unsigned>(p.group_list ? p.grid_groups : p.n_groups > 0 ? p.n_groups : 1));
  #define DS4_CALL(T) launch_matmul<T>(p, split, grid, stream)
  DS4_DISPATCH_TYPE(p.type, DS4_CALL)
#undef DS4_CALL
  DS4_CUDA_LAUNCH_CHECK("matmul_kernel");
}

void matmul_pair(const MatmulParams& a, const MatmulParams& b, cudaStream_t stream) {
  if (validate(a) && validate(b) && on_tensor_cores(a) && on_tensor_cores(b) && mma_matmul_pair(a, b, stream)) return;
  matmul(a, stream);
  matmul(b, stream);
}

void dequant_rows(const DequantRowsParams& p, cudaStream_t stream) {
  const char* k = "cuda::dequant_rows";
  DS4_LAUNCH_REQUIRE(cuda_type_supported(p.type), k, "unsupported weight type " + std::string(ggml_type_name(p.type)));
  DS4_LAUNCH_REQUIRE(p.n_in > 0 && p.n_in % kUnitValues == 0, k, "n_in must be a positive multiple of 32");
  const auto row_bytes = ggml_row_bytes(p.type, static_cast<uint64_t>(p.n_in));
  DS4_LAUNCH_REQUIRE(row_bytes && *row_bytes == p.row_bytes, k, "row_bytes does not match the type");
  DS4_LAUNCH_REQUIRE(p.copies >= 1 && p.out_stride >= p.n_in * p.copies, k, "out_stride too small");
  if (p.n_rows == 0) return;
  DS4_LAUNCH_REQUIRE(p.w && p.rows && p.out, k, "null pointer");
  #define DS4_CALL(T) launch_dequant<T>(p, stream)
  DS4_DISPATCH_TYPE(p.type, DS4_CALL)
#undef DS4_CALL
  DS4_CUDA_LAUNCH_CHECK("dequant_rows_kernel");
}

}  // namespace ds4::cuda
