// GPU dequantisation and dequantising mat-vec / mat-mat (kernels/cuda/matmul.h) against the CPU
// formats (kernels/quant.h): dequantised rows bit-exact; products within 1e-5·Σ|w·x| of an f64
// reference (the CPU dot_row contract) for every format over a sweep of shapes, token counts that
// cover partial tiles and passes, split-K (warps and clusters), grouped (expert) mode with empty
// groups, the grouped output-projection mode and activations of any magnitude, on the tensor-core
// path and the CUDA-core one; every token's result bit-identical whatever the batch around it,
// two products launched as a pair bit-identical to their own launches, and activations split once
// into bf16 planes bit-identical to the kernels' own split.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "kernels/cuda/matmul.h"
#include "kernels/cuda/mma_matmul.h"
#include "kernels/cuda/ops.h"
#include "kernels/quant.h"
#include "tests/cuda/gpu_test_util.h"

namespace ds4 {
namespace {

using test::DeviceArray;

constexpr GgmlType kTypes[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0,
                               GgmlType::Q2_K, GgmlType::Q4_K, GgmlType::IQ2_XXS};

// n_out rows of n_in random values stored as `type`, with their exact dequantised values.
struct HostMatrix {
  GgmlType type;
  int64_t n_in, n_out;
  uint64_t row_bytes;
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // dequantised, [n_out, n_in]
};

HostMatrix make_matrix(GgmlType type, int64_t n_in, int64_t n_out, uint32_t seed) {
  HostMatrix m{type, n_in, n_out, *ggml_row_bytes(type, n_in), {}, {}};
  const std::vector<float> src = test::random_floats(n_in * n_out, seed, 0.5f);
  m.bytes.resize(m.row_bytes * n_out);
  m.values.resize(n_in * n_out);
  for (int64_t r = 0; r < n_out; ++r) {
    quantize_row(type, &src[r * n_in], &m.bytes[r * m.row_bytes], n_in);
    dequantize_row_ref(type, &m.bytes[r * m.row_bytes], &m.values[r * n_in], n_in);
  }
  return m;
}

int64_t block_values(GgmlType t) { return ggml_type_info(t).block_values >= 256 ? 256 : 32; }

TEST(CudaDequant, RowsAreBitExactForEveryFormat) {
  DS4_REQUIRE_GPU();
  for (GgmlType type : kTypes) {
    const int64_t n_in = 512, n_rows = 6;
    const HostMatrix m = make_matrix(type, n_in, n_rows, 11);
    const std::vector<int32_t> rows = {3, 0, 5, 5, 1};
    DeviceArray<uint8_t> w(m.bytes);
    DeviceArray<int32_t> r(rows);
    DeviceArray<float> out(rows.size() * 2 * n_in);
    cuda::fill(out.get(), static_cast<int64_t>(out.size()), NAN, nullptr);
    cuda::DequantRowsParams p;
    p.w = w.get(), p.type = type, p.n_in = n_in, p.row_bytes = m.row_bytes, p.rows = r.get();
    p.n_rows = static_cast<int64_t>(rows.size()), p.out = out.get(), p.out_stride = 2 * n_in, p.copies = 2;
    cuda::dequant_rows(p, nullptr);
    const std::vector<float> got = out.to_host();
    for (size_t i = 0; i < rows.size(); ++i)
      for (int c = 0; c < 2; ++c)
        for (int64_t k = 0; k < n_in; ++k)
          ASSERT_EQ(got[(i * 2 + c) * n_in + k], m.values[rows[i] * n_in + k])
              << ggml_type_name(type) << " row " << rows[i] << " value " << k;
  }
}

// Runs y = W·x on the GPU for n_tokens rows of x (stride n_in); cuda_cores forces the CUDA-core
// kernel instead of the tensor-core one.
std::vector<float> gpu_matmul(const HostMatrix& m, const DeviceArray<uint8_t>& w, const float* x_dev, int64_t n_tokens,
                              bool cuda_cores = false) {
  DeviceArray<float> y(n_tokens * m.n_out);
  cuda::fill(y.get(), static_cast<int64_t>(y.size()), NAN, nullptr);
  cuda::MatmulParams p;
  p.w = w.get(), p.type = m.type, p.n_in = m.n_in, p.n_out = m.n_out, p.row_bytes = m.row_bytes;
  p.x = x_dev, p.x_stride = m.n_in, p.y = y.get(), p.y_stride = m.n_out, p.n_tokens = n_tokens;
  p.cuda_cores = cuda_cores;
  cuda::matmul(p, nullptr);
  return y.to_host();
}

// The f64 reference Σ w·x and the tolerance 1e-5·Σ|w·x| of every output [token, row].
struct Reference {
  std::vector<double> value, bound;
};
Reference reference(const HostMatrix& m, const std::vector<float>& x, int64_t n_tokens) {
  Reference r{std::vector<double>(n_tokens * m.n_out), std::vector<double>(n_tokens * m.n_out)};
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t o = 0; o < m.n_out; ++o) {
      double ref = 0.0, bound = 0.0;
      for (int64_t i = 0; i < m.n_in; ++i) {
        const double v = double(m.values[o * m.n_in + i]) * x[t * m.n_in + i];
        ref += v;
        bound += std::fabs(v);
      }
      r.value[t * m.n_out + o] = ref;
      r.bound[t * m.n_out + o] = 1e-5 * bound + 1e-300;
    }
  return r;
}

// Checks y against the reference; the worst error over the bound is reported on failure.
void expect_close(const Reference& ref, const std::vector<float>& y, int64_t n_out, const std::string& what) {
  int bad = 0;
  for (size_t k = 0; k < y.size(); ++k)
    if (!(std::fabs(y[k] - ref.value[k]) <= ref.bound[k]) && bad++ < 5)
      ADD_FAILURE() << what << " token " << k / n_out << " row " << k % n_out << ": got " << y[k] << ", want "
                    << ref.value[k] << " (tolerance " << ref.bound[k] << ")";
  EXPECT_EQ(bad, 0) << what;
}

TEST(CudaMatmul, EveryFormatAndShapeMatchesTheReferenceAndIsBatchInvariant) {
  DS4_REQUIRE_GPU();
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{256, 5}, {1024, 300}, {4096, 64}, {8192, 100}, {2048, 2100}};
  for (GgmlType type : kTypes) {
    std::vector<std::pair<int64_t, int64_t>> sweep = shapes;
    if (block_values(type) == 32) sweep.push_back({96, 7});
    for (const auto& [n_in, n_out] : sweep) {
      const HostMatrix m = make_matrix(type, n_in, n_out, static_cast<uint32_t>(n_in + n_out));
      DeviceArray<uint8_t> w(m.bytes);
      // 100 tokens: two passes of the tensor-core kernel's 64-token tiling, the second partial.
      const int64_t max_tokens = 100;
      const std::vector<float> x = test::random_floats(max_tokens * n_in, 7);
      DeviceArray<float> xd(x);
      const std::string what = std::string(ggml_type_name(type)) + " [" + std::to_string(n_in) + ", " + std::to_string(n_out) + "]";
      const Reference ref = reference(m, x, max_tokens);
      const std::vector<float> all = gpu_matmul(m, w, xd.get(), max_tokens);
      expect_close(ref, all, n_out, what);
      expect_close(ref, gpu_matmul(m, w, xd.get(), max_tokens, true), n_out, what + " (CUDA cores)");
      for (int64_t n_tokens : {1, 3, 8, 12, 16, 37, 70}) {  // the last tokens alone or in a smaller batch: identical bits
        const std::vector<float> part = gpu_matmul(m, w, xd.get() + (max_tokens - n_tokens) * n_in, n_tokens);
        ASSERT_EQ(0, std::memcmp(part.data(), all.data() + (max_tokens - n_tokens) * n_out, part.size() * sizeof(float)))
            << what << " with " << n_tokens << " tokens differs from the 100-token batch";
      }
    }
  }
}

TEST(CudaMatmul, GroupedModeRunsEachGroupOnItsListWithEmptyGroups) {
  DS4_REQUIRE_GPU();
  // n_in 8192: the k range split over a cluster of blocks too (grouped blocks leave together).
  for (const int64_t n_in : {512, 8192})
    for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q4_K, GgmlType::IQ2_XXS, GgmlType::F16}) {
      const int64_t n_out = 48, n_groups = 5, n_x = 9;
      const HostMatrix m = make_matrix(type, n_in, n_out * n_groups, 5);  // group g = rows [48g, 48g + 48)
      DeviceArray<uint8_t> w(m.bytes);
      const std::vector<float> x = test::random_floats(n_x * n_in, 8);
      // 60 entries over groups 0, 2 and 4 (1 and 3 empty), group 4 with more than one 32-token pass.
      const int n_entries = 60;
      std::vector<int32_t> offsets = {0, 5, 5, 9, 9, n_entries}, x_rows, y_rows;
      for (int i = 0; i < n_entries; ++i) {
        x_rows.push_back((i * 7 + 3) % n_x);
        y_rows.push_back((i * 13 + 1) % n_entries);  // a permutation of 0..59
      }
      DeviceArray<float> xd(x), y(n_entries * n_out);
      DeviceArray<int32_t> od(offsets), xr(x_rows), yr(y_rows);
      cuda::fill(y.get(), static_cast<int64_t>(y.size()), NAN, nullptr);
      cuda::MatmulParams p;
      p.w = w.get(), p.type = type, p.n_in = n_in, p.n_out = n_out, p.row_bytes = m.row_bytes;
      p.x = xd.get(), p.x_stride = n_in, p.y = y.get(), p.y_stride = n_out;
      p.n_groups = n_groups, p.group_stride_bytes = m.row_bytes * n_out;
      p.group_offsets = od.get(), p.x_rows = xr.get(), p.y_rows = yr.get();
      cuda::matmul(p, nullptr);
      std::vector<float> got = y.to_host();
      // The same through the list of non-empty groups (as the MoE layer runs it): identical bits.
      DeviceArray<int32_t> list(std::vector<int32_t>{0, 2, 4, 1}), count(std::vector<int32_t>{3});
      cuda::fill(y.get(), static_cast<int64_t>(y.size()), NAN, nullptr);
      p.group_list = list.get(), p.group_count = count.get(), p.grid_groups = 4;
      cuda::matmul(p, nullptr);
      ASSERT_EQ(0, std::memcmp(got.data(), y.to_host().data(), got.size() * sizeof(float))) << ggml_type_name(type);
      // Without the list but with entry-count hints of 24 per group on average (the 32-token
      // tiling), 132 (the 64-token tiling) and 4 in all (the 8-token tiling, groups in several
      // passes): identical bits.
      for (const int64_t entries : {int64_t(n_entries) * 2, int64_t(n_entries) * 11, int64_t(4)}) {
        cuda::fill(y.get(), static_cast<int64_t>(y.size()), NAN, nullptr);
        p.group_list = nullptr, p.group_count = nullptr, p.grid_groups = 0, p.n_tokens = entries;
        cuda::matmul(p, nullptr);
        ASSERT_EQ(0, std::memcmp(got.data(), y.to_host().data(), got.size() * sizeof(float)))
            << ggml_type_name(type) << " with the entry count " << entries;
      }
      for (int g = 0; g < n_groups; ++g)
        for (int i = offsets[g]; i < offsets[g + 1]; ++i)
          for (int64_t o = 0; o < n_out; ++o) {
            double ref = 0.0, bound = 0.0;
            for (int64_t k = 0; k < n_in; ++k) {
              const double v = double(m.values[(g * n_out + o) * n_in + k]) * x[x_rows[i] * n_in + k];
              ref += v;
              bound += std::fabs(v);
            }
            ASSERT_LE(std::fabs(got[y_rows[i] * n_out + o] - ref), 1e-5 * bound)
                << ggml_type_name(type) << " n_in " << n_in << " group " << g << " entry " << i << " row " << o;
          }
    }
}

TEST(CudaMatmul, GroupedOutputProjectionReadsItsHeadGroup) {
  DS4_REQUIRE_GPU();
  for (const int64_t rank : {16, 64}) {  // 16: the CUDA-core kernel; 64: the tensor cores
    const int64_t n_in = 256, groups = 4, n_out = rank * groups, T = 5;
    const HostMatrix m = make_matrix(GgmlType::Q8_0, n_in, n_out, 3);
    DeviceArray<uint8_t> w(m.bytes);
    const std::vector<float> x = test::random_floats(T * n_in * groups, 4);
    DeviceArray<float> xd(x), y(T * n_out);
    cuda::MatmulParams p;
    p.w = w.get(), p.type = m.type, p.n_in = n_in, p.n_out = n_out, p.row_bytes = m.row_bytes;
    p.x = xd.get(), p.x_stride = n_in * groups, p.y = y.get(), p.y_stride = n_out, p.n_tokens = T, p.x_group_rows = rank;
    cuda::matmul(p, nullptr);
    const std::vector<float> got = y.to_host();
    for (int64_t t = 0; t < T; ++t)
      for (int64_t o = 0; o < n_out; ++o) {
        double ref = 0.0, bound = 0.0;
        for (int64_t k = 0; k < n_in; ++k) {
          const double v = double(m.values[o * n_in + k]) * x[t * n_in * groups + (o / rank) * n_in + k];
          ref += v;
          bound += std::fabs(v);
        }
        ASSERT_LE(std::fabs(got[t * n_out + o] - ref), 1e-5 * bound) << "rank " << rank << " token " << t << " row " << o;
      }
  }
}

// Two products of the same activations as one launch (mma_matmul_pair: gate and up, q_a and kv):
// each output bit-identical to its own launch, plain (token counts of every tiling) and grouped.
struct PairCase {
  GgmlType type;
  int64_t n_in, n_out_a, n_out_b;
};

// The same bits (memcmp: -0 and +0 differ, NaN equals itself).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The product of one matrix of a pair on tokens [0, n_tokens) of x, into rows of n_out + 3.
cuda::MatmulParams pair_params(const HostMatrix& m, const DeviceArray<uint8_t>& w, const float* x, float* y,
                               int64_t n_tokens) {
  cuda::MatmulParams p;
  p.w = w.get(), p.type = m.type, p.n_in = m.n_in, p.n_out = m.n_out, p.row_bytes = m.row_bytes;
  p.x = x, p.x_stride = m.n_in, p.y = y, p.y_stride = m.n_out + 3, p.n_tokens = n_tokens;
  return p;
}

TEST(CudaMatmul, PairedLaunchIsBitIdenticalToTwoLaunches) {
  DS4_REQUIRE_GPU();
  // Q8_0 4096 -> 1024 and 512: attn_q_a and attn_kv (both 32 k parts); the others: equal shapes.
  const PairCase cases[] = {{GgmlType::Q8_0, 4096, 1024, 512}, {GgmlType::F16, 1024, 256, 256},
                            {GgmlType::IQ2_XXS, 4096, 160, 160}, {GgmlType::Q2_K, 2048, 96, 96},
                            {GgmlType::Q4_K, 1024, 64, 64}};
  for (const PairCase& pc : cases) {
    const HostMatrix a = make_matrix(pc.type, pc.n_in, pc.n_out_a, 31), b = make_matrix(pc.type, pc.n_in, pc.n_out_b, 32);
    DeviceArray<uint8_t> wa(a.bytes), wb(b.bytes);
    const int64_t max_tokens = 70;
    DeviceArray<float> xd(test::random_floats(max_tokens * pc.n_in, 33));
    for (const int64_t T : {int64_t(1), int64_t(5), int64_t(12), int64_t(37), max_tokens}) {  // 8- to 64-token tilings
      const std::string what = std::string(ggml_type_name(pc.type)) + " with " + std::to_string(T) + " tokens";
      DeviceArray<float> ya(T * (a.n_out + 3)), yb(T * (b.n_out + 3)), pa(T * (a.n_out + 3)), pb(T * (b.n_out + 3));
      for (auto* y : {&ya, &yb, &pa, &pb}) cuda::fill(y->get(), static_cast<int64_t>(y->size()), 0.0f, nullptr);
      cuda::matmul(pair_params(a, wa, xd.get(), ya.get(), T), nullptr);
      cuda::matmul(pair_params(b, wb, xd.get(), yb.get(), T), nullptr);
      ASSERT_TRUE(cuda::mma_matmul_pair(pair_params(a, wa, xd.get(), pa.get(), T), pair_params(b, wb, xd.get(), pb.get(), T),
                                        nullptr))
          << what << ": not launched as a pair";
      ASSERT_TRUE(same_bits(ya.to_host(), pa.to_host())) << what << " (first matrix)";
      ASSERT_TRUE(same_bits(yb.to_host(), pb.to_host())) << what << " (second matrix)";
    }
  }
}

TEST(CudaMatmul, PairedGroupedLaunchIsBitIdenticalToTwoLaunches) {
  DS4_REQUIRE_GPU();
  for (GgmlType type : {GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q8_0}) {
    const int64_t n_in = 1024, n_out = 64, n_groups = 4, n_x = 5, n_entries = 11;
    const HostMatrix a = make_matrix(type, n_in, n_out * n_groups, 41), b = make_matrix(type, n_in, n_out * n_groups, 42);
    DeviceArray<uint8_t> wa(a.bytes), wb(b.bytes);
    DeviceArray<float> xd(test::random_floats(n_x * n_in, 43));
    std::vector<int32_t> x_rows, y_rows;
    for (int i = 0; i < n_entries; ++i) x_rows.push_back(i % n_x), y_rows.push_back((i * 4 + 1) % n_entries);
    DeviceArray<int32_t> od(std::vector<int32_t>{0, 3, 3, 10, n_entries}), xr(x_rows), yr(y_rows);
    DeviceArray<int32_t> list(std::vector<int32_t>{0, 2, 3, 1}), count(std::vector<int32_t>{3});
    auto params = [&](const HostMatrix& m, const DeviceArray<uint8_t>& w, float* y) {
      cuda::MatmulParams p;
      p.w = w.get(), p.type = type, p.n_in = n_in, p.n_out = n_out, p.row_bytes = m.row_bytes;
      p.x = xd.get(), p.x_stride = n_in, p.y = y, p.y_stride = n_out, p.n_tokens = n_entries;
      p.n_groups = n_groups, p.group_stride_bytes = m.row_bytes * n_out, p.group_offsets = od.get();
      p.x_rows = xr.get(), p.y_rows = yr.get(), p.group_list = list.get(), p.group_count = count.get(), p.grid_groups = 4;
      return p;
    };
    DeviceArray<float> ya(n_entries * n_out), yb(n_entries * n_out), pa(n_entries * n_out), pb(n_entries * n_out);
    for (auto* y : {&ya, &yb, &pa, &pb}) cuda::fill(y->get(), static_cast<int64_t>(y->size()), 0.0f, nullptr);
    cuda::matmul(params(a, wa, ya.get()), nullptr);
    cuda::matmul(params(b, wb, yb.get()), nullptr);
    ASSERT_TRUE(cuda::mma_matmul_pair(params(a, wa, pa.get()), params(b, wb, pb.get()), nullptr)) << ggml_type_name(type);
    ASSERT_TRUE(same_bits(ya.to_host(), pa.to_host())) << ggml_type_name(type) << " (first matrix)";
    ASSERT_TRUE(same_bits(yb.to_host(), pb.to_host())) << ggml_type_name(type) << " (second matrix)";
    // Through cuda::matmul_pair as the MoE layer calls it: the same bits.
    cuda::fill(pa.get(), static_cast<int64_t>(pa.size()), 0.0f, nullptr);
    cuda::matmul_pair(params(a, wa, pa.get()), params(b, wb, pb.get()), nullptr);
    ASSERT_TRUE(same_bits(ya.to_host(), pa.to_host())) << ggml_type_name(type) << " (matmul_pair)";
  }
}

// Activations split once into bf16 planes (cuda::split_x_planes, MatmulParams::x_planes) give
// the bits of the in-kernel split: grouped (groups of 1 to 11 entries, 8-, 32- and 64-token tilings,
// split over warps and clusters) and plain, at magnitudes 1e-30 .. 1e30. x itself is zeroed for
// the planes' run of IQ2_XXS and Q2_K, so a kernel that ignored the planes would fail; Q4_K
// ignores them (reads_x_planes false) and reads x.
TEST(CudaMatmul, PreparedActivationPlanesGiveTheSameBits) {
  DS4_REQUIRE_GPU();
  const float scales[] = {1e-30f, 1e-6f, 1.0f, 3e4f, 1e30f};
  for (const int64_t n_in : {512, 8192})
    for (GgmlType type : {GgmlType::IQ2_XXS, GgmlType::Q2_K, GgmlType::Q4_K}) {
      const bool reads = type != GgmlType::Q4_K;
      const int64_t n_out = 64, n_groups = 4, n_x = 15, n_entries = 16;
      const HostMatrix m = make_matrix(type, n_in, n_out * n_groups, 61);
      DeviceArray<uint8_t> w(m.bytes);
      std::vector<float> x = test::random_floats(n_x * n_in, 62);
      for (int64_t t = 0; t < n_x; ++t)
        for (int64_t i = 0; i < n_in; ++i) x[t * n_in + i] *= scales[t % 5];
      DeviceArray<float> xd(x), zeros(n_x * n_in), y(n_entries * n_out), yp(n_entries * n_out);
      cuda::fill(zeros.get(), static_cast<int64_t>(zeros.size()), 0.0f, nullptr);
      DeviceArray<uint8_t> planes(n_x * cuda::x_plane_row_bytes(n_in));
      cuda::split_x_planes(xd.get(), n_in, n_x, n_in, planes.get(), nullptr);
      std::vector<int32_t> x_rows, y_rows;
      for (int i = 0; i < n_entries; ++i) x_rows.push_back((i * 4 + 3) % n_x), y_rows.push_back((i * 5 + 2) % n_entries);
      DeviceArray<int32_t> od(std::vector<int32_t>{0, 1, 1, 5, n_entries}), xr(x_rows), yr(y_rows);
      DeviceArray<int32_t> list(std::vector<int32_t>{0, 2, 3, 1}), count(std::vector<int32_t>{3});
      const std::string what = std::string(ggml_type_name(type)) + " n_in " + std::to_string(n_in);
      auto run = [&](cuda::MatmulParams p, DeviceArray<float>& out) {
        cuda::fill(out.get(), static_cast<int64_t>(out.size()), NAN, nullptr);
        p.y = out.get();
        cuda::matmul(p, nullptr);
        return out.to_host();
      };
      // Entry counts for the 8-, 32- and 64-token tilings (hints: 1, 24 and 160 per group).
      for (const int64_t entries : {int64_t(4), int64_t(n_entries) * 6, int64_t(n_entries) * 40}) {
        cuda::MatmulParams p;
        p.w = w.get(), p.type = type, p.n_in = n_in, p.n_out = n_out, p.row_bytes = m.row_bytes;
        p.x = xd.get(), p.x_stride = n_in, p.y_stride = n_out, p.n_tokens = entries;
        p.n_groups = n_groups, p.group_stride_bytes = m.row_bytes * n_out, p.group_offsets = od.get();
        p.x_rows = xr.get(), p.y_rows = yr.get();
        if (entries == 4) p.group_list = list.get(), p.group_count = count.get(), p.grid_groups = 4;
        const std::vector<float> want = run(p, y);
        p.x = reads ? zeros.get() : p.x, p.x_planes = planes.get();
        ASSERT_EQ(reads, cuda::reads_x_planes(p)) << what;
        ASSERT_TRUE(same_bits(want, run(p, yp))) << what << " grouped, entry count " << entries;
      }
      for (const int64_t T : {int64_t(1), int64_t(12), n_x}) {  // plain mode, every tiling
        const HostMatrix& plain = m;  // its first n_out rows
        cuda::MatmulParams p = pair_params(plain, w, xd.get(), nullptr, T);
        p.n_out = n_out, p.y_stride = n_out;
        const std::vector<float> want = run(p, y);
        p.x = reads ? zeros.get() : p.x, p.x_planes = planes.get();
        ASSERT_TRUE(same_bits(want, run(p, yp))) << what << " plain, " << T << " tokens";
      }
    }
}

// Shapes whose k splits differ cannot share a launch: matmul_pair runs them one after the other.
TEST(CudaMatmul, PairWithDifferentSplitsFallsBackToTwoLaunches) {
  DS4_REQUIRE_GPU();
  const HostMatrix a = make_matrix(GgmlType::Q8_0, 4096, 64, 51), b = make_matrix(GgmlType::Q8_0, 4096, 4096, 52);
  DeviceArray<uint8_t> wa(a.bytes), wb(b.bytes);
  const int64_t T = 3;
  const std::vector<float> x = test::random_floats(T * 4096, 53);
  DeviceArray<float> xd(x), pa(T * (a.n_out + 3)), pb(T * (b.n_out + 3));
  EXPECT_FALSE(cuda::mma_matmul_pair(pair_params(a, wa, xd.get(), pa.get(), T), pair_params(b, wb, xd.get(), pb.get(), T),
                                     nullptr));
  cuda::fill(pa.get(), static_cast<int64_t>(pa.size()), NAN, nullptr);
  cuda::matmul_pair(pair_params(a, wa, xd.get(), pa.get(), T), pair_params(b, wb, xd.get(), pb.get(), T), nullptr);
  const std::vector<float> got = pa.to_host();
  const Reference ref = reference(a, x, T);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t o = 0; o < a.n_out; ++o)
      ASSERT_LE(std::fabs(got[t * (a.n_out + 3) + o] - ref.value[t * a.n_out + o]), ref.bound[t * a.n_out + o]);
}

// The activation split is exact at any magnitude (bf16 has f32's exponent range): tokens scaled
// by 1e-30 .. 1e30 stay within the CPU contract.
TEST(CudaMatmul, ActivationsOfAnyMagnitudeMatchTheReference) {
  DS4_REQUIRE_GPU();
  const float scales[] = {1e-30f, 1e-6f, 1.0f, 3e4f, 1e30f};
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::F16, GgmlType::Q2_K, GgmlType::Q4_K, GgmlType::IQ2_XXS}) {
    const int64_t n_in = 1024, n_out = 96, T = 5;
    const HostMatrix m = make_matrix(type, n_in, n_out, 21);
    DeviceArray<uint8_t> w(m.bytes);
    std::vector<float> x = test::random_floats(T * n_in, 22);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < n_in; ++i) x[t * n_in + i] *= scales[t];
    DeviceArray<float> xd(x);
    expect_close(reference(m, x, T), gpu_matmul(m, w, xd.get(), T), n_out, std::string(ggml_type_name(type)) + " scaled");
  }
}

}  // namespace
}  // namespace ds4
