// Loading of the tokenizer tables from the shipped text files or from GGUF metadata.
#include "engine/tokenizer_tables.h"

#include <fstream>

#include "engine/gguf.h"

namespace ds4 {
namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw LoadError("cannot open tokenizer table " + path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

std::vector<std::string> string_array(const GgufFile& file, const char* key) {
  const GgufValue* v = file.find(key);
  if (!v) throw LoadError(std::string("missing tokenizer metadata ") + key);
  const GgufArray& arr = v->as_array(key);
  std::vector<std::string> out;
  out.reserve(arr.items.size());
  for (const auto& item : arr.items) out.push_back(item.as_string(key));
  return out;
}

}  // namespace

TokenizerTables load_tokenizer_tables(const std::string& dir) {
  TokenizerTables t;
  t.tokens = read_lines(dir + "/tokens.txt");
  t.merges = read_lines(dir + "/merges.txt");
  for (const auto& s : read_lines(dir + "/types.txt")) t.types.push_back(std::stoi(s));
  if (t.types.size() != t.tokens.size())
    throw LoadError("tokenizer tables in " + dir + ": " + std::to_string(t.tokens.size()) +
                    " tokens but " + std::to_string(t.types.size()) + " types");
  return t;
}

TokenizerTables tokenizer_tables_from_gguf(const GgufFile& file) {
  TokenizerTables t;
  t.tokens = string_array(file, "tokenizer.ggml.tokens");
  t.merges = string_array(file, "tokenizer.ggml.merges");
  if (const GgufValue* v = file.find("tokenizer.ggml.token_type")) {
    for (const auto& item : v->as_array("tokenizer.ggml.token_type").items)
      t.types.push_back(static_cast<int32_t>(item.as_int("tokenizer.ggml.token_type")));
    if (t.types.size() != t.tokens.size())
      throw LoadError("tokenizer.ggml.token_type has " + std::to_string(t.types.size()) +
                      " entries, tokenizer.ggml.tokens has " + std::to_string(t.tokens.size()));
  } else {
    t.types.assign(t.tokens.size(), 1);
  }
  if (const GgufValue* v = file.find("tokenizer.ggml.bos_token_id"))
    t.bos_id = static_cast<int32_t>(v->as_int("tokenizer.ggml.bos_token_id"));
  if (const GgufValue* v = file.find("tokenizer.ggml.eos_token_id"))
    t.eos_id = static_cast<int32_t>(v->as_int("tokenizer.ggml.eos_token_id"));
  const auto n = static_cast<int32_t>(t.tokens.size());
  if (t.bos_id < 0 || t.bos_id >= n || t.eos_id < 0 || t.eos_id >= n)
    throw LoadError("tokenizer bos/eos id out of range of the vocabulary");
  return t;
}

}  // namespace ds4
