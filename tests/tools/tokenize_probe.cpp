// Test helper for tests/python/test_tokenizer_parity.py: runs the C++ tokenizer over a batch.
// Records are length-prefixed (u32 little-endian byte count, then the bytes) so any byte string
// passes through. Modes:
//   encode  IN OUT  records -> one line of space-separated ids per record
//   decode  IN OUT  lines of ids -> records (the decoded bytes)
//   pieces  IN OUT  records -> records of the pre-tokenizer pieces, each piece a record, a record
//                   of length 0xFFFFFFFF ending each input
//   classes OUT     unicode::char_class of every code point 0..0x10FFFF, one byte each
// Options (before the mode): --tables DIR (tokens/types/merges.txt), --flavor hf|py,
// --no-special (encode without matching added tokens).
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/pretokenizer.h"
#include "engine/tokenizer.h"
#include "engine/unicode_class.h"

namespace {

std::vector<std::string> read_records(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<std::string> out;
  unsigned char len_bytes[4];
  while (in.read(reinterpret_cast<char*>(len_bytes), 4)) {
    const uint32_t len = len_bytes[0] | len_bytes[1] << 8 | len_bytes[2] << 16 | uint32_t(len_bytes[3]) << 24;
    std::string s(len, '\0');
    if (len && !in.read(s.data(), len)) throw std::runtime_error("truncated record in " + path);
    out.push_back(std::move(s));
  }
  return out;
}

void write_record(std::ostream& out, const std::string& s, uint32_t len) {
  const unsigned char b[4] = {uint8_t(len), uint8_t(len >> 8), uint8_t(len >> 16), uint8_t(len >> 24)};
  out.write(reinterpret_cast<const char*>(b), 4);
  out.write(s.data(), static_cast<std::streamsize>(s.size()));
}

int usage() {
  std::cerr << "usage: tokenize_probe [--tables DIR] [--flavor hf|py] [--no-special] "
               "encode|decode|pieces IN OUT | classes OUT\n";
  return 2;
}

int run(int argc, char** argv) {
  std::string tables_dir, flavor_name = "hf";
  bool special = true;
  int i = 1;
  for (; i < argc && std::string(argv[i]).rfind("--", 0) == 0; ++i) {
    const std::string opt = argv[i];
    if (opt == "--no-special") special = false;
    else if (opt == "--tables" && i + 1 < argc) tables_dir = argv[++i];
    else if (opt == "--flavor" && i + 1 < argc) flavor_name = argv[++i];
    else return usage();
  }
  if (i >= argc) return usage();
  const std::string mode = argv[i++];
  if (mode == "classes") {
    if (i + 1 != argc) return usage();
    std::ofstream out(argv[i], std::ios::binary);
    for (char32_t cp = 0; cp < 0x110000; ++cp) out.put(static_cast<char>(ds4::unicode::char_class(cp)));
    return out ? 0 : 1;
  }
  if (i + 2 != argc || tables_dir.empty() || (flavor_name != "hf" && flavor_name != "py")) return usage();
  const auto flavor = flavor_name == "hf" ? ds4::PretokenizerFlavor::kHfRegex : ds4::PretokenizerFlavor::kPyPackage;
  const std::string in_path = argv[i], out_path = argv[i + 1];
  std::ofstream out(out_path, std::ios::binary);
  if (mode == "pieces") {
    ds4::PretokScratch scratch;
    for (const std::string& s : read_records(in_path)) {
      ds4::pretokenize(s, flavor, scratch);
      uint32_t begin = 0;
      for (uint32_t end : scratch.piece_ends) {
        write_record(out, s.substr(begin, end - begin), end - begin);
        begin = end;
      }
      write_record(out, "", 0xFFFFFFFFu);
    }
    return out ? 0 : 1;
  }
  const ds4::Tokenizer tok(ds4::load_tokenizer_tables(tables_dir), flavor);
  if (mode == "encode") {
    for (const std::string& s : read_records(in_path)) {
      const std::vector<int32_t> ids = tok.encode(s, special);
      for (size_t k = 0; k < ids.size(); ++k) out << (k ? " " : "") << ids[k];
      out << '\n';
    }
  } else if (mode == "decode") {
    std::ifstream in(in_path);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::vector<int32_t> ids;
      for (int32_t id; fields >> id;) ids.push_back(id);
      if (const auto bad = tok.find_invalid_id(ids)) {
        std::cerr << "invalid token id " << ids[*bad] << "\n";
        return 1;
      }
      const std::string bytes = tok.decode(ids);
      write_record(out, bytes, static_cast<uint32_t>(bytes.size()));
    }
  } else {
    return usage();
  }
  return out ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "tokenize_probe: " << e.what() << "\n";
    return 1;
  }
}
