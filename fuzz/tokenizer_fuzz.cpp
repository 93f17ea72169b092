// libFuzzer target: the DeepSeek V4 tokenizer (shipped tables) and the streaming detokenizer on
// arbitrary bytes. Properties: every id is in the vocabulary and decode(encode(x)) == x for both
// pre-tokenizer flavours, with and without special-token parsing (engine/tokenizer.h promises it
// for any byte string); the streaming detokenizer fed those ids emits only valid UTF-8.
// Input: byte 0 holds the switches, byte 1 the length of an optional stop string (made valid UTF-8,
// as JSON strings are), then the text.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/detokenizer.h"
#include "engine/gguf.h"
#include "fuzz/fuzz_support.h"

namespace {

const ds4::Tokenizer& package_tokenizer() {
  static const ds4::Tokenizer tokenizer(ds4::load_tokenizer_tables(DS4_TOKENIZER_DIR), ds4::PretokenizerFlavor::kPyPackage);
  return tokenizer;
}

std::vector<int32_t> round_trip(const ds4::Tokenizer& tok, std::string_view text, bool parse_special) {
  const std::vector<int32_t> ids = tok.encode(text, parse_special);
  if (auto bad = tok.find_invalid_id(ids)) ds4::fuzz::fail("encode produced an invalid id");
  if (tok.decode(ids) != text) ds4::fuzz::fail("decode(encode(x)) != x", text);
  return ids;
}

void check_detokenizer(const ds4::Tokenizer& tok, const std::vector<int32_t>& ids, bool thinking, std::string_view stop) {
  ds4::DetokenizerOptions options;
  options.thinking = thinking;
  if (!stop.empty()) options.stop.emplace_back(stop);
  options.stop_in_reasoning = thinking;
  ds4::StreamingDetokenizer detok(tok, options);
  ds4::DetokenizerOutput out;
  for (int32_t id : ids) detok.push(id, out);
  detok.finish(out);
  if (!ds4::gguf_is_valid_utf8(out.content)) ds4::fuzz::fail("detokenizer content is not valid UTF-8", out.content);
  if (!ds4::gguf_is_valid_utf8(out.reasoning)) ds4::fuzz::fail("detokenizer reasoning is not valid UTF-8", out.reasoning);
  if (out.stopped && (out.stop_index != 0 || stop.empty())) ds4::fuzz::fail("stop reported without a stop string");
}

}  // namespace

// Loads the tokenizer before fuzzing starts, so its load time never counts as a slow input.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)ds4::fuzz::shipped_tokenizer();
  (void)package_tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ds4::fuzz::FuzzReader in(data, size);
  const uint8_t flags = in.byte();
  // Stop strings come from JSON, which is valid UTF-8 (simdjson checks it).
  const std::string stop = (flags & 8) ? ds4::fuzz::to_valid_utf8(in.piece(16)) : std::string{};
  const std::string_view text = in.rest();
  const bool parse_special = flags & 1;
  const ds4::Tokenizer& tok = (flags & 2) ? package_tokenizer() : ds4::fuzz::shipped_tokenizer();
  const std::vector<int32_t> ids = round_trip(tok, text, parse_special);
  check_detokenizer(tok, ids, /*thinking=*/flags & 4, stop);
  return 0;
}
