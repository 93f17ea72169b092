// quant_bench: CPU throughput of kernels/quant.h on a ROWS×COLS weight matrix per format —
// dot_row (matrix-vector product, the reference forward pass's hot path) on one thread and on
// all threads, dequantize_row, and the scalar references — in GB/s of weight bytes read, next to
// a plain streaming-read baseline (the memory roofline of this machine). Never run by ctest.
// "per CPU-s" divides by the CPU time the threads actually got, which stays meaningful when other
// processes share the cores; a matrix small enough for the caches (e.g. 64 rows) shows the
// compute-bound decode rate, 4096 rows the DRAM-bound one.
//   quant_bench [ROWS=4096] [COLS=4096] [SECONDS_PER_CASE=0.5]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <ctime>
#include <vector>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "kernels/f16.h"
#include "kernels/ggml_type.h"
#include "kernels/quant.h"

namespace {

using ds4::GgmlType;
using Clock = std::chrono::steady_clock;

// Random valid blocks (finite f16 scales); dot and dequantise speed do not depend on the values.
std::vector<uint8_t> random_matrix(GgmlType t, int64_t rows, int64_t cols) {
  const auto& info = ds4::ggml_type_info(t);
  std::vector<uint8_t> m(*ds4::ggml_row_bytes(t, cols) * rows);
  std::mt19937_64 rng(7);
  for (size_t i = 0; i + 8 <= m.size(); i += 8) {
    const uint64_t r = rng();
    std::memcpy(&m[i], &r, 8);
  }
  const uint16_t scale = ds4::f32_to_f16(0.01f);
  std::vector<int> scale_offsets;
  if (t == GgmlType::Q8_0 || t == GgmlType::IQ2_XXS) scale_offsets = {0};
  if (t == GgmlType::Q4_K) scale_offsets = {0, 2};
  if (t == GgmlType::Q2_K) scale_offsets = {80, 82};
  for (size_t b = 0; b < m.size(); b += info.block_bytes)
    for (int off : scale_offsets) std::memcpy(&m[b + off], &scale, 2);
  if (t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16) {
    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (auto& v : row) v = static_cast<float>(static_cast<int64_t>(rng() % 2001) - 1000) * 1e-3f;
      ds4::quantize_row(t, row.data(), &m[r * *ds4::ggml_row_bytes(t, cols)], cols);
    }
  }
  return m;
}

struct Timing {
  double wall_s;  // wall-clock seconds per full pass
  double cpu_s;   // CPU seconds per full pass, summed over threads (robust on a shared machine)
};

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Runs body(thread, row_begin, row_end) over all rows split across `threads` threads, enough
// passes to last about `seconds` (threads are started once, not per pass).
Timing time_passes(int64_t rows, int threads, double seconds,
                   const std::function<void(int, int64_t, int64_t)>& body) {
  const auto t0 = Clock::now();
  body(0, 0, rows);  // calibration pass (also warms caches)
  const double one = std::chrono::duration<double>(Clock::now() - t0).count();
  const int passes = std::max(1, static_cast<int>(seconds / std::max(one, 1e-9) * threads));
  std::vector<double> cpu(threads, 0.0);
  const auto start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    const int64_t r0 = rows * t / threads, r1 = rows * (t + 1) / threads;
    pool.emplace_back([&body, &cpu, t, r0, r1, passes] {
      const double c0 = thread_cpu_seconds();
      for (int p = 0; p < passes; ++p) body(t, r0, r1);
      cpu[t] = thread_cpu_seconds() - c0;
    });
  }
  for (auto& th : pool) th.join();
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  double cpu_total = 0.0;
  for (double c : cpu) cpu_total += c;
  return {wall / passes, cpu_total / passes};
}

// Streaming read of `bytes` (sum of 256-bit loads): the memory-bandwidth roofline.
double read_baseline(const std::vector<uint8_t>& buf, int threads, double seconds) {
  std::atomic<uint64_t> sink{0};
  const int64_t lines = static_cast<int64_t>(buf.size() / 64);
  const Timing t = time_passes(lines, threads, seconds, [&](int, int64_t l0, int64_t l1) {
#ifdef __AVX2__
    __m256i acc = _mm256_setzero_si256();
    for (int64_t l = l0; l < l1; ++l) {
      const auto* p = reinterpret_cast<const __m256i*>(buf.data() + 64 * l);
      acc = _mm256_add_epi64(acc, _mm256_add_epi64(_mm256_loadu_si256(p), _mm256_loadu_si256(p + 1)));
    }
    sink += static_cast<uint64_t>(_mm256_extract_epi64(acc, 0));
#else
    uint64_t acc = 0;
    for (int64_t l = l0 * 8; l < l1 * 8; ++l) {
      uint64_t v;
      std::memcpy(&v, buf.data() + 8 * l, 8);
      acc += v;
    }
    sink += acc;
#endif
  });
  return static_cast<double>(lines * 64) / t.wall_s / 1e9;
}

void bench_type(GgmlType type, int64_t rows, int64_t cols, int threads, double seconds) {
  const std::vector<uint8_t> w = random_matrix(type, rows, cols);
  const uint64_t row_bytes = *ds4::ggml_row_bytes(type, cols);
  const double gb = static_cast<double>(w.size()) / 1e9;
  std::vector<float> x(cols), y(rows);
  for (int64_t i = 0; i < cols; ++i) x[i] = static_cast<float>((i * 37) % 101 - 50) * 0.02f;
  auto dot_rows = [&](bool ref) {
    return [&, ref](int, int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        y[r] = ref ? ds4::dot_row_ref(type, &w[r * row_bytes], x.data(), cols)
                   : ds4::dot_row(type, &w[r * row_bytes], x.data(), cols);
    };
  };
  std::vector<std::vector<float>> scratch(threads, std::vector<float>(cols));
  auto dequant_rows = [&](bool ref) {
    return [&, ref](int t, int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        if (ref) ds4::dequantize_row_ref(type, &w[r * row_bytes], scratch[t].data(), cols);
        else ds4::dequantize_row(type, &w[r * row_bytes], scratch[t].data(), cols);
      }
    };
  };
  const Timing dot1 = time_passes(rows, 1, seconds, dot_rows(false));
  const Timing dotn = time_passes(rows, threads, seconds, dot_rows(false));
  const Timing dotref = time_passes(rows, 1, seconds / 4, dot_rows(true));
  const Timing deq1 = time_passes(rows, 1, seconds, dequant_rows(false));
  const Timing deqref = time_passes(rows, 1, seconds / 4, dequant_rows(true));
  const double values = static_cast<double>(rows * cols) / 1e9;
  std::printf("%-8s %6.1f MB | dot 1t %6.2f GB/s (%6.2f per CPU-s) %dt %6.2f GB/s | ref %5.2f | "
              "dequant 1t %6.2f GB/s = %5.2f Gval/s (%6.2f per CPU-s) | ref %5.2f\n",
              std::string(ds4::ggml_type_name(type)).c_str(), gb * 1e3, gb / dot1.wall_s,
              gb / dot1.cpu_s, threads, gb / dotn.wall_s, gb / dotref.wall_s, gb / deq1.wall_s,
              values / deq1.wall_s, gb / deq1.cpu_s, gb / deqref.wall_s);
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 4096;
  const int64_t cols = argc > 2 ? std::atoll(argv[2]) : 4096;
  const double seconds = argc > 3 ? std::atof(argv[3]) : 0.5;
  if (rows <= 0 || cols <= 0 || cols % 256 != 0 || !(seconds > 0)) {
    std::fprintf(stderr, "usage: quant_bench [ROWS>0] [COLS, a multiple of 256] [SECONDS>0]\n");
    return 2;
  }
  const int threads = std::max(1u, std::thread::hardware_concurrency());
  std::printf("quant_bench: %lld x %lld matrix, %d hardware threads, %.2f s per case\n",
              static_cast<long long>(rows), static_cast<long long>(cols), threads, seconds);
  {
    const std::vector<uint8_t> buf = random_matrix(GgmlType::F32, rows, cols);
    std::printf("read baseline (roofline): %.2f GB/s (1t) %.2f GB/s (%dt) over %.1f MB\n",
                read_baseline(buf, 1, seconds), read_baseline(buf, threads, seconds), threads,
                static_cast<double>(buf.size()) / 1e6);
  }
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0,
                     GgmlType::Q4_K, GgmlType::Q2_K, GgmlType::IQ2_XXS})
    bench_type(t, rows, cols, threads, seconds);
  return 0;
}
