// The raw tokenizer tables: vocabulary strings (GPT-2 byte-mapped), GGUF token types and BPE
// merges. Loaded from the shipped tables (data/tokenizer, unpacked into the build tree) when a
// model is generated, or from a GGUF's tokenizer.ggml.* metadata when a model is served.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ds4 {

class GgufFile;

struct TokenizerTables {
  std::vector<std::string> tokens;  // token text of id i (GGUF byte-mapped form)
  std::vector<int32_t> types;       // GGUF token type of id i: 1 normal, 3 control, 4 user-defined
  std::vector<std::string> merges;  // "left right", rank = index
  int32_t bos_id = 0;
  int32_t eos_id = 1;
};

// Reads tokens.txt / types.txt / merges.txt from dir. Throws LoadError naming the file.
TokenizerTables load_tokenizer_tables(const std::string& dir);
// Reads tokenizer.ggml.{tokens,token_type,merges,bos_token_id,eos_token_id}. Throws LoadError.
TokenizerTables tokenizer_tables_from_gguf(const GgufFile& file);

}  // namespace ds4
