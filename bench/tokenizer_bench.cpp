// Tokenizer benchmark: encode and decode throughput (MB/s, tokens/s) on a large deterministic
// mixed text (English prose, code, CJK, Cyrillic, digits, whitespace runs, emoji, pseudo-words),
// ~100k+ tokens.
// Usage: tokenizer_bench [--tables DIR] [--repeat N]; DIR defaults to $DS4_BINARY_DIR/data/tokenizer.
// Prints numbers only; never a test.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "engine/tokenizer.h"

namespace {

std::string make_text(size_t target_bytes) {
  static const char* kFragments[] = {
      "The quick brown fox jumps over the lazy dog. ", "However, the results were not conclusive; ",
      "def forward(self, x):\n        return self.proj(x) + residual\n", "    if (n < 0) {\n\treturn -1;\n    }\n",
      "深度求索发布了新的模型。", "これはテストです、カタカナとひらがな。", "Привет, как дела? ",
      "1234567890 ", "3.14159 ", "\n\n", "   ", "{\"key\": [1, 2, 3], \"ok\": true}\n", "😀🚀 ",
      "state-of-the-art tokenization (BPE) matters!!! ", "Ελληνικά και العربية ", "<div class=\"x\">",
  };
  // Half fixed fragments, half pseudo-words from random syllables and random numbers, so that the
  // piece vocabulary keeps growing as in real prompts (not only a few repeated strings).
  static const char* kSyllables[] = {"ka", "to", "ri", "mun", "de", "sha", "lo", "vex", "qu", "an",
                                     "ber", "ti", "gro", "ph", "el", "ys", "zu", "nor", "ic", "ma"};
  std::mt19937 rng(1234);
  std::string text;
  while (text.size() < target_bytes) {
    if (rng() % 2) {
      text += kFragments[rng() % std::size(kFragments)];
      continue;
    }
    text += rng() % 5 ? " " : "\n";
    for (int s = 1 + rng() % 4; s > 0; --s) text += kSyllables[rng() % std::size(kSyllables)];
    if (rng() % 6 == 0) text += std::to_string(rng() % 100000);
    if (rng() % 8 == 0) text += rng() % 2 ? "," : ".";
  }
  return text;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string tables;
  int repeat = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tables" && i + 1 < argc) tables = argv[++i];
    else if (a == "--repeat" && i + 1 < argc) repeat = std::atoi(argv[++i]);
    else { std::fprintf(stderr, "usage: tokenizer_bench [--tables DIR] [--repeat N]\n"); return 2; }
  }
  if (tables.empty()) {
    const char* bin = std::getenv("DS4_BINARY_DIR");
    if (!bin) { std::fprintf(stderr, "tokenizer_bench: give --tables DIR or set DS4_BINARY_DIR\n"); return 2; }
    tables = std::string(bin) + "/data/tokenizer";
  }
  const auto t_load = std::chrono::steady_clock::now();
  const ds4::Tokenizer tok(ds4::load_tokenizer_tables(tables));
  std::printf("load: %.1f ms\n", seconds_since(t_load) * 1e3);

  const std::string text = make_text(400 * 1000);
  std::vector<int32_t> ids;
  double best_encode = 1e30, best_decode = 1e30;
  std::string decoded;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    ids = tok.encode(text, /*parse_special=*/true);
    best_encode = std::min(best_encode, seconds_since(t0));
    t0 = std::chrono::steady_clock::now();
    decoded = tok.decode(ids);
    best_decode = std::min(best_decode, seconds_since(t0));
  }
  if (decoded != text) { std::fprintf(stderr, "round trip failed\n"); return 1; }
  const double mb = text.size() / 1e6;
  std::printf("text: %.2f MB, %zu tokens (%.2f bytes/token)\n", mb, ids.size(), double(text.size()) / ids.size());
  std::printf("encode: %.2f ms  %.1f MB/s  %.2f M tokens/s\n", best_encode * 1e3, mb / best_encode, ids.size() / best_encode / 1e6);
  std::printf("decode: %.2f ms  %.1f MB/s  %.2f M tokens/s\n", best_decode * 1e3, mb / best_decode, ids.size() / best_decode / 1e6);
  return 0;
}
