// libFuzzer target: GgufFile::parse on arbitrary bytes. A hostile file must be refused with a
// LoadError, never read out of bounds or allocate without bound. An accepted file is walked
// further the way model loading does: every metadata value through its checked accessors, tensor
// views inside the image, then the model config and a tokenizer built from the metadata (which must encode to valid ids).
#include <cstdint>
#include <span>

#include "engine/gguf.h"
#include "engine/model_config.h"
#include "engine/tokenizer.h"
#include "engine/tokenizer_tables.h"
#include "fuzz/fuzz_support.h"

namespace {

// Visits a value the way readers of the metadata do; accessor errors are LoadErrors.
void touch_value(const ds4::GgufValue& v, int depth) {
  if (depth > ds4::kGgufMaxArrayDepth) ds4::fuzz::fail("array nesting deeper than the reader's limit");
  try {
    if (v.is_integer()) (void)v.as_int("v");
  } catch (const ds4::LoadError&) {
  }
  if (v.type == ds4::GgufValueType::ARRAY)
    for (const ds4::GgufValue& item : v.as_array("v").items) {
      if (item.type != v.as_array("v").element_type) ds4::fuzz::fail("array item of another type");
      touch_value(item, depth + 1);
    }
}

void check_accepted(const ds4::GgufFile& file, std::span<const uint8_t> bytes) {
  for (const ds4::GgufKeyValue& kv : file.metadata()) {
    if (file.find(kv.key) == nullptr) ds4::fuzz::fail("metadata key not found by find()", kv.key);
    touch_value(kv.value, 1);
  }
  for (const ds4::GgufTensorInfo& t : file.tensors()) {
    const uint8_t* end = bytes.data() + bytes.size();
    if (t.n_bytes > 0 && (t.data < bytes.data() || t.data > end || t.n_bytes > uint64_t(end - t.data)))
      ds4::fuzz::fail("tensor data outside the image", t.name);
    if (file.find_tensor(t.name) == nullptr) ds4::fuzz::fail("tensor not found by find_tensor()", t.name);
  }
  try {
    (void)ds4::config_from_gguf(file);
  } catch (const ds4::LoadError&) {
  }
  try {
    const ds4::Tokenizer tokenizer(ds4::tokenizer_tables_from_gguf(file));
    const std::vector<int32_t> ids = tokenizer.encode("<\xef\xbd\x9cUser\xef\xbd\x9c>Hi", true);
    if (tokenizer.find_invalid_id(ids)) ds4::fuzz::fail("a GGUF tokenizer produced an invalid id");
  } catch (const ds4::LoadError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  std::unique_ptr<ds4::GgufFile> file;
  try {
    file = ds4::GgufFile::parse(bytes, "fuzz.gguf");
  } catch (const ds4::LoadError&) {
    return 0;
  }
  check_accepted(*file, bytes);
  return 0;
}
