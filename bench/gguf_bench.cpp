// gguf_bench: how long GgufFile::open takes on a file shaped like the real model's directory:
// a 129280-entry token string array, as many merges, an i32 token-type array, ~50 scalar keys and
// 1330 tensor infos (tiny data: parse time does not depend on tensor sizes, it never reads them).
// Usage: gguf_bench [DIR] (default /tmp). Prints the write time and min/median open time.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/gguf.h"

namespace ds4 {
namespace {

constexpr int kVocab = 129280;
constexpr int kTensors = 1330;

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

void write_model_like(const std::string& path) {
  GgufWriter w(path);
  w.add_metadata("general.architecture", GgufValue::string("deepseek4"));
  for (int i = 0; i < 48; ++i) w.add_metadata("bench.key" + std::to_string(i), GgufValue::u32(i));
  std::vector<std::string> tokens, merges;
  std::vector<GgufValue> types;
  tokens.reserve(kVocab);
  merges.reserve(kVocab);
  for (int i = 0; i < kVocab; ++i) {
    tokens.push_back("Ġtok" + std::to_string(i * 7919 % 100000));
    merges.push_back("Ġa" + std::to_string(i % 977) + " b" + std::to_string(i % 613));
    types.push_back(GgufValue::i32(1));
  }
  w.add_metadata("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
  w.add_metadata("tokenizer.ggml.merges", GgufValue::string_array(merges));
  w.add_metadata("tokenizer.ggml.token_type", GgufValue::array(GgufValueType::INT32, std::move(types)));
  for (int i = 0; i < kTensors; ++i)
    w.add_tensor("blk." + std::to_string(i / 30) + ".ffn_gate_exps.weight" + std::to_string(i % 30),
                 GgmlType::F32, {8});
  w.write_header();
  const std::vector<uint8_t> data(32, 0);
  for (int i = 0; i < kTensors; ++i) w.append_tensor_data(data);
  w.finish();
}

int run(const std::string& dir) {
  const std::string path = dir + "/gguf_bench_" + std::to_string(::getpid()) + ".gguf";
  double t0 = now_ms();
  write_model_like(path);
  const double write_ms = now_ms() - t0;
  std::vector<double> open_ms;
  uint64_t header_bytes = 0;
  for (int rep = 0; rep < 7; ++rep) {
    t0 = now_ms();
    const auto f = GgufFile::open(path);
    open_ms.push_back(now_ms() - t0);
    header_bytes = f->data_offset();
    if (f->tensors().size() != kTensors || f->find("tokenizer.ggml.tokens") == nullptr) {
      std::fprintf(stderr, "gguf_bench: unexpected parse result\n");
      ::unlink(path.c_str());
      return 1;
    }
  }
  ::unlink(path.c_str());
  std::sort(open_ms.begin(), open_ms.end());
  std::printf("model-like GGUF: %d tensors, 3 x %d-entry arrays, header %.2f MiB\n", kTensors,
              kVocab, static_cast<double>(header_bytes) / (1 << 20));
  std::printf("write %.1f ms; open+parse min %.1f ms, median %.1f ms (%.0f MiB/s of header)\n",
              write_ms, open_ms.front(), open_ms[open_ms.size() / 2],
              static_cast<double>(header_bytes) / (1 << 20) / (open_ms.front() / 1000.0));
  return 0;
}

}  // namespace
}  // namespace ds4

int main(int argc, char** argv) {
  try {
    return ds4::run(argc > 1 ? argv[1] : "/tmp");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gguf_bench: %s\n", e.what());
    return 1;
  }
}
