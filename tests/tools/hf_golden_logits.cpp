// hf_golden_logits: runs the CPU reference forward pass over an HF golden's tokens and writes the
// logits of every position, for `scripts/hf_goldens.py --check`.
//   hf_golden_logits MODEL.gguf TOKENS.i32 OUT.f32 [--qat] [--chunk N] [--threads N]
// TOKENS.i32: int32 LE ids; OUT.f32: f32 LE [n_tokens, n_vocab]. QAT round trips are off unless
// --qat (HF applies none); --chunk N feeds the sequence N tokens per call (default: all at once).
// Exit status 1 with a message on bad input.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/model.h"

namespace ds4 {
namespace {

std::vector<int32_t> read_tokens(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot open " + path);
  const std::streamoff bytes = in.tellg();
  if (bytes <= 0 || bytes % 4 != 0) throw std::runtime_error(path + ": size is not a positive multiple of 4");
  std::vector<int32_t> tokens(static_cast<size_t>(bytes / 4));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(tokens.data()), bytes);
  if (!in) throw std::runtime_error("cannot read " + path);
  return tokens;
}

int parse_positive(const char* flag, const char* text) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (!end || *end || v <= 0 || v > (1 << 24)) throw std::runtime_error(std::string(flag) + ": bad value '" + text + "'");
  return static_cast<int>(v);
}

int run(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL.gguf TOKENS.i32 OUT.f32 [--qat] [--chunk N] [--threads N]\n", argv[0]);
    return 2;
  }
  ForwardOptions options;
  options.quantize_kv = false;
  int chunk = 0, threads = 0;
  for (int i = 4; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--qat") {
      options.quantize_kv = true;
    } else if ((a == "--chunk" || a == "--threads") && i + 1 < argc) {
      (a == "--chunk" ? chunk : threads) = parse_positive(argv[i], argv[i + 1]);
      ++i;
    } else {
      throw std::runtime_error("unknown argument '" + a + "'");
    }
  }
  const std::unique_ptr<Model> model = load_model(argv[1]);
  const std::vector<int32_t> tokens = read_tokens(argv[2]);
  for (int32_t t : tokens)
    if (t < 0 || t >= model->config.n_vocab) throw std::runtime_error("token id " + std::to_string(t) + " outside the vocabulary");
  CpuBackend backend(model->config, model->weights, options, threads);
  ContiguousKv kv(model->config);
  const size_t step = chunk > 0 ? static_cast<size_t>(chunk) : tokens.size();
  std::vector<float> logits;
  for (size_t pos = 0; pos < tokens.size(); pos += step) {
    ForwardBatch batch;
    batch.sequences.push_back({&kv, std::span<const int32_t>(tokens).subspan(pos, std::min(step, tokens.size() - pos)), true});
    const ForwardOutput out = backend.forward(batch);
    logits.insert(logits.end(), out.logits.begin(), out.logits.end());
  }
  std::ofstream out(argv[3], std::ios::binary);
  out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
  if (!out) throw std::runtime_error(std::string("cannot write ") + argv[3]);
  std::printf("%zu tokens x %d vocab -> %s\n", tokens.size(), model->config.n_vocab, argv[3]);
  return 0;
}

}  // namespace
}  // namespace ds4

int main(int argc, char** argv) {
  try {
    return ds4::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hf_golden_logits: %s\n", e.what());
    return 1;
  }
}
