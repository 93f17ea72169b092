// GPU dequantisation and dequantising mat-vec / mat-mat (kernels/cuda/matmul.h) against the CPU
// formats (kernels/quant.h): dequantised rows bit-exact; products within 1e-5·Σ|w·x| of an f64
// reference (the CPU dot_row contract) for every format over a sweep of shapes, token counts that
// cover partial tiles, split rows, grouped (expert) mode with empty groups and the grouped
// output-projection mode; every token's result bit-identical whatever the batch around it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "kernels/cuda/matmul.h"
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

// Runs y = W·x on the GPU for n_tokens rows of x (stride n_in).
std::vector<float> gpu_matmul(const HostMatrix& m, const DeviceArray<uint8_t>& w, const float* x_dev, int64_t n_tokens) {
  DeviceArray<float> y(n_tokens * m.n_out);
  cuda::fill(y.get(), static_cast<int64_t>(y.size()), NAN, nullptr);
  cuda::MatmulParams p;
  p.w = w.get(), p.type = m.type, p.n_in = m.n_in, p.n_out = m.n_out, p.row_bytes = m.row_bytes;
  p.x = x_dev, p.x_stride = m.n_in, p.y = y.get(), p.y_stride = m.n_out, p.n_tokens = n_tokens;
  cuda::matmul(p, nullptr);
  return y.to_host();
}

// Checks y against the f64 reference with tolerance 1e-5·Σ|w·x| per output.
void expect_close(const HostMatrix& m, const std::vector<float>& x, const std::vector<float>& y, int64_t n_tokens,
                  const std::string& what) {
  int bad = 0;
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t o = 0; o < m.n_out; ++o) {
      double ref = 0.0, bound = 0.0;
      for (int64_t i = 0; i < m.n_in; ++i) {
        const double v = double(m.values[o * m.n_in + i]) * x[t * m.n_in + i];
        ref += v;
        bound += std::fabs(v);
      }
      const float got = y[t * m.n_out + o];
      if (!(std::fabs(got - ref) <= 1e-5 * bound + 1e-30) && bad++ < 5)
        ADD_FAILURE() << what << " token " << t << " row " << o << ": got " << got << ", want " << ref;
    }
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
      const int64_t max_tokens = 13;
      const std::vector<float> x = test::random_floats(max_tokens * n_in, 7);
      DeviceArray<float> xd(x);
      const std::string what = std::string(ggml_type_name(type)) + " [" + std::to_string(n_in) + ", " + std::to_string(n_out) + "]";
      const std::vector<float> all = gpu_matmul(m, w, xd.get(), max_tokens);
      expect_close(m, x, all, max_tokens, what);
      for (int64_t n_tokens : {1, 3, 8}) {  // each token alone or in a smaller batch: identical bits
        const std::vector<float> part = gpu_matmul(m, w, xd.get() + (max_tokens - n_tokens) * n_in, n_tokens);
        ASSERT_EQ(0, std::memcmp(part.data(), all.data() + (max_tokens - n_tokens) * n_out, part.size() * sizeof(float)))
            << what << " with " << n_tokens << " tokens differs from the 13-token batch";
      }
    }
  }
}

TEST(CudaMatmul, GroupedModeRunsEachGroupOnItsListWithEmptyGroups) {
  DS4_REQUIRE_GPU();
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q4_K, GgmlType::IQ2_XXS, GgmlType::F16}) {
    const int64_t n_in = 512, n_out = 48, n_groups = 5, n_x = 9;
    const HostMatrix m = make_matrix(type, n_in, n_out * n_groups, 5);  // group g = rows [48g, 48g + 48)
    DeviceArray<uint8_t> w(m.bytes);
    const std::vector<float> x = test::random_floats(n_x * n_in, 8);
    // 20 entries over groups 0, 2 and 4 (1 and 3 empty), group 4 with more than one tile.
    std::vector<int32_t> offsets = {0, 5, 5, 9, 9, 20}, x_rows, y_rows;
    for (int i = 0; i < 20; ++i) {
      x_rows.push_back((i * 7 + 3) % n_x);
      y_rows.push_back((i * 13 + 1) % 20);  // a permutation of 0..19
    }
    DeviceArray<float> xd(x), y(20 * n_out);
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
              << ggml_type_name(type) << " group " << g << " entry " << i << " row " << o;
        }
  }
}

TEST(CudaMatmul, GroupedOutputProjectionReadsItsHeadGroup) {
  DS4_REQUIRE_GPU();
  const int64_t n_in = 256, rank = 16, groups = 4, n_out = rank * groups, T = 5;
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
      ASSERT_LE(std::fabs(got[t * n_out + o] - ref), 1e-5 * bound) << "token " << t << " row " << o;
    }
}

}  // namespace
}  // namespace ds4
