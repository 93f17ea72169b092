// quant_probe: command-line access to kernels/quant.h for tests/python/test_quant_gguf.py, which
// cross-checks our block formats against the independent gguf package. Raw files only: .bin holds
// consecutive blocks of one type, .f32 little-endian floats. Bad arguments or files print an
// error naming the problem and exit with status 2.
//   quant_probe quantize TYPE N SEED OUT.bin [SRC_OUT.f32]   seeded N(0,1) data → our blocks
//   quant_probe quantize-f32 TYPE IN.f32 OUT.bin              given floats → our blocks
//   quant_probe dequantize[-ref] TYPE IN.bin OUT.f32          blocks → floats (vectorised | ref)
//   quant_probe dot TYPE W.bin X.f32                          prints dot_row and dot_row_ref
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "kernels/ggml_type.h"
#include "kernels/quant.h"

namespace {

using ds4::GgmlType;

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "quant_probe: %s\n", message.c_str());
  std::exit(2);
}

GgmlType parse_type(const std::string& name) {
  const auto type = ds4::ggml_type_from_name(name);
  if (!type || !ds4::quant_supported(*type)) fail("unsupported type '" + name + "'");
  return *type;
}

int64_t parse_int(const std::string& s, const char* what) {
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < 0) fail(std::string("bad ") + what + " '" + s + "'");
  return v;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '" + path + "'");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const void* data, size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!out) fail("cannot write '" + path + "'");
}

std::vector<float> read_f32(const std::string& path) {
  const std::vector<uint8_t> raw = read_file(path);
  if (raw.size() % 4 != 0) fail("'" + path + "' is not a whole number of f32 values");
  std::vector<float> v(raw.size() / 4);
  std::memcpy(v.data(), raw.data(), raw.size());
  return v;
}

// Number of values stored in `bytes` of `type`, or an error if it is not whole blocks.
int64_t values_in(GgmlType type, size_t bytes, const std::string& path) {
  const auto& info = ds4::ggml_type_info(type);
  if (bytes % info.block_bytes != 0)
    fail("'" + path + "' holds " + std::to_string(bytes) + " bytes, not a whole number of " +
         std::string(info.name) + " blocks of " + std::to_string(info.block_bytes));
  return static_cast<int64_t>(bytes / info.block_bytes * info.block_values);
}

// Same generator as tests/unit/quant_test.cpp: Box–Muller over mt19937_64.
std::vector<float> gaussian(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&rng] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1p-53; };
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform())), a = 2.0 * std::numbers::pi * uniform();
    v[i] = static_cast<float>(r * std::cos(a));
    if (i + 1 < n) v[i + 1] = static_cast<float>(r * std::sin(a));
  }
  return v;
}

void quantize_to(GgmlType type, const std::vector<float>& x, const std::string& out) {
  const auto bytes = ds4::ggml_row_bytes(type, x.size());
  if (!bytes) fail("value count " + std::to_string(x.size()) + " is not a whole number of blocks");
  for (float v : x)
    if (!std::isfinite(v) && type != GgmlType::F32 && type != GgmlType::F16 &&
        type != GgmlType::BF16)
      fail("input holds a non-finite value");
  std::vector<uint8_t> q(*bytes);
  ds4::quantize_row(type, x.data(), q.data(), static_cast<int64_t>(x.size()));
  write_file(out, q.data(), q.size());
}

int run(const std::vector<std::string>& a) {
  const std::string& cmd = a[0];
  if (cmd == "quantize" && (a.size() == 5 || a.size() == 6)) {
    const GgmlType type = parse_type(a[1]);
    const std::vector<float> x = gaussian(parse_int(a[2], "N"), parse_int(a[3], "SEED"));
    quantize_to(type, x, a[4]);
    if (a.size() == 6) write_file(a[5], x.data(), x.size() * 4);
    return 0;
  }
  if (cmd == "quantize-f32" && a.size() == 4) {
    quantize_to(parse_type(a[1]), read_f32(a[2]), a[3]);
    return 0;
  }
  if ((cmd == "dequantize" || cmd == "dequantize-ref") && a.size() == 4) {
    const GgmlType type = parse_type(a[1]);
    const std::vector<uint8_t> q = read_file(a[2]);
    const int64_t n = values_in(type, q.size(), a[2]);
    std::vector<float> y(n);
    if (cmd == "dequantize") ds4::dequantize_row(type, q.data(), y.data(), n);
    else ds4::dequantize_row_ref(type, q.data(), y.data(), n);
    write_file(a[3], y.data(), y.size() * 4);
    return 0;
  }
  if (cmd == "dot" && a.size() == 4) {
    const GgmlType type = parse_type(a[1]);
    const std::vector<uint8_t> q = read_file(a[2]);
    const int64_t n = values_in(type, q.size(), a[2]);
    const std::vector<float> x = read_f32(a[3]);
    if (static_cast<int64_t>(x.size()) != n)
      fail("'" + a[3] + "' holds " + std::to_string(x.size()) + " values, the row has " +
           std::to_string(n));
    std::printf("%.9g %.9g\n", ds4::dot_row(type, q.data(), x.data(), n),
                ds4::dot_row_ref(type, q.data(), x.data(), n));
    return 0;
  }
  fail("usage: quant_probe quantize TYPE N SEED OUT.bin [SRC.f32] | quantize-f32 TYPE IN.f32 "
       "OUT.bin | dequantize[-ref] TYPE IN.bin OUT.f32 | dot TYPE W.bin X.f32");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) fail("missing command");
  return run(std::vector<std::string>(argv + 1, argv + argc));
}
