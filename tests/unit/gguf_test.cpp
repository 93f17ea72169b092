// Tests of the GGUF container (engine/gguf.h): value accessors, writer -> reader round trips of
// every value and tensor type, alignment, v2, truncation at every byte, seeded random corruption,
// hand-built hostile files (huge counts, overlaps, misalignment, bad alignment) and writer misuse.
// Every parse of a damaged image runs on an exactly-sized heap copy so ASan catches any OOB read.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "engine/gguf.h"

namespace ds4 {
namespace {

using Bytes = std::vector<uint8_t>;

std::string temp_path(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return ::testing::TempDir() + "gguf_test_" + std::to_string(::getpid()) + "_" + info->name() +
         "_" + tag + ".gguf";
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// Parses a copy of exactly `bytes` (so any read past the end is a heap overflow under ASan).
void parse_copy(const Bytes& bytes, size_t n, const std::string& name) {
  Bytes copy(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
  auto f = GgufFile::parse(copy, name);
  // Touch everything the reader produced while `copy` is alive.
  for (const auto& t : f->tensors()) {
    if (t.n_bytes > 0) {
      volatile uint8_t sink = t.data[0] ^ t.data[t.n_bytes - 1];
      (void)sink;
    }
  }
}

std::string load_error_of(const Bytes& bytes, const std::string& name = "hostile.gguf") {
  try {
    parse_copy(bytes, bytes.size(), name);
  } catch (const LoadError& e) {
    return e.what();
  }
  return "<no error>";
}

bool same_value(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type || a.value.index() != b.value.index()) return false;
  if (const auto* d = std::get_if<double>(&a.value))
    return std::bit_cast<uint64_t>(*d) == std::bit_cast<uint64_t>(std::get<double>(b.value));
  if (const auto* arr = std::get_if<GgufArray>(&a.value)) {
    const auto& brr = std::get<GgufArray>(b.value);
    if (arr->element_type != brr.element_type || arr->items.size() != brr.items.size())
      return false;
    for (size_t i = 0; i < arr->items.size(); ++i)
      if (!same_value(arr->items[i], brr.items[i])) return false;
    return true;
  }
  if (const auto* u = std::get_if<uint64_t>(&a.value)) return *u == std::get<uint64_t>(b.value);
  if (const auto* i = std::get_if<int64_t>(&a.value)) return *i == std::get<int64_t>(b.value);
  if (const auto* t = std::get_if<bool>(&a.value)) return *t == std::get<bool>(b.value);
  return std::get<std::string>(a.value) == std::get<std::string>(b.value);
}

Bytes random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

// ---------------------------------------------------------------- hand-built GGUF images
class Builder {
 public:
  Builder& u8(uint8_t v) { return raw(&v, 1); }
  Builder& u32(uint32_t v) { return raw(&v, 4); }
  Builder& u64(uint64_t v) { return raw(&v, 8); }
  Builder& str(std::string_view s) {
    u64(s.size());
    return raw(s.data(), s.size());
  }
  Builder& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return u32(kGgufMagic).u32(version).u64(n_tensors).u64(n_kv);
  }
  Builder& key(std::string_view k, GgufValueType t) { return str(k).u32(static_cast<uint32_t>(t)); }
  Builder& tensor(std::string_view name, std::vector<uint64_t> dims, uint32_t type, uint64_t off) {
    str(name).u32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) u64(d);
    return u32(type).u64(off);
  }
  Builder& pad_to(size_t alignment) {
    while (b_.size() % alignment != 0) b_.push_back(0);
    return *this;
  }
  Builder& zeros(size_t n) {
    b_.insert(b_.end(), n, 0);
    return *this;
  }
  const Bytes& bytes() const { return b_; }

 private:
  Builder& raw(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b_.insert(b_.end(), c, c + n);
    return *this;
  }
  Bytes b_;
};

// ---------------------------------------------------------------- the sample file
struct Sample {
  std::vector<GgufKeyValue> metadata;
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<uint64_t> dims;
    Bytes data;
  };
  std::vector<Tensor> tensors;
};

GgufValue nested(int depth) {  // depth 1 = array of UINT16
  if (depth == 1) return GgufValue::array(GgufValueType::UINT16, {GgufValue::u16(7)});
  return GgufValue::array(GgufValueType::ARRAY, {nested(depth - 1), nested(depth - 1)});
}

Sample every_value_sample() {
  Sample s;
  auto add = [&](std::string k, GgufValue v) { s.metadata.push_back({std::move(k), std::move(v)}); };
  add("u8", GgufValue::u8(255));
  add("i8", GgufValue::i8(-128));
  add("u16", GgufValue::u16(65535));
  add("i16", GgufValue::i16(-32768));
  add("u32", GgufValue::u32(4294967295u));
  add("i32", GgufValue::i32(std::numeric_limits<int32_t>::min()));
  add("u64", GgufValue::u64(std::numeric_limits<uint64_t>::max()));
  add("i64", GgufValue::i64(std::numeric_limits<int64_t>::min()));
  add("f32", GgufValue::f32(-1.5e-38f));
  add("f32.inf", GgufValue::f32(std::numeric_limits<float>::infinity()));
  add("f64", GgufValue::f64(3.141592653589793));
  add("bool.t", GgufValue::boolean(true));
  add("bool.f", GgufValue::boolean(false));
  add("str.empty", GgufValue::string(""));
  add("str.utf8", GgufValue::string("Grüße, 世界 🙂"));
  add("str.raw", GgufValue::string(std::string("\xff\xfe\0x\x80", 5)));  // values keep raw bytes
  add("arr.empty.u32", GgufValue::array(GgufValueType::UINT32, {}));
  add("arr.empty.str", GgufValue::array(GgufValueType::STRING, {}));
  add("arr.empty.arr", GgufValue::array(GgufValueType::ARRAY, {}));
  add("arr.i8", GgufValue::array(GgufValueType::INT8, {GgufValue::i8(-1), GgufValue::i8(127)}));
  add("arr.f32", GgufValue::array(GgufValueType::FLOAT32, {GgufValue::f32(0.25f), GgufValue::f32(-0.f)}));
  add("arr.f64", GgufValue::array(GgufValueType::FLOAT64, {GgufValue::f64(1e300)}));
  add("arr.bool", GgufValue::array(GgufValueType::BOOL, {GgufValue::boolean(true), GgufValue::boolean(false)}));
  add("arr.u64", GgufValue::array(GgufValueType::UINT64, {GgufValue::u64(1), GgufValue::u64(1ull << 63)}));
  add("arr.i64", GgufValue::array(GgufValueType::INT64, {GgufValue::i64(-5)}));
  add("arr.u8", GgufValue::array(GgufValueType::UINT8, {GgufValue::u8(0), GgufValue::u8(9)}));
  add("arr.i16", GgufValue::array(GgufValueType::INT16, {GgufValue::i16(-300)}));
  add("arr.u16", GgufValue::array(GgufValueType::UINT16, {GgufValue::u16(300)}));
  add("arr.i32", GgufValue::array(GgufValueType::INT32, {GgufValue::i32(-70000)}));
  add("arr.str", GgufValue::string_array({"a", "", "ü", std::string("\x00\xff", 2)}));
  add("arr.nested", GgufValue::array(GgufValueType::ARRAY,
                                     {GgufValue::string_array({"x", "yz"}),
                                      GgufValue::string_array({}),
                                      GgufValue::string_array({"🙂"})}));
  add("arr.deepest", nested(kGgufMaxArrayDepth));
  return s;
}

// Writes `s` through GgufWriter and returns the file bytes.
Bytes write_sample(const Sample& s, const std::string& path, uint32_t alignment = 32) {
  GgufWriter w(path, alignment);
  for (const auto& kv : s.metadata) w.add_metadata(kv.key, kv.value);
  for (const auto& t : s.tensors) w.add_tensor(t.name, t.type, t.dims);
  w.write_header();
  for (const auto& t : s.tensors) {
    // Stream in uneven pieces to exercise partial appends.
    size_t at = 0, piece = 1;
    while (at < t.data.size()) {
      const size_t n = std::min(piece, t.data.size() - at);
      w.append_tensor_data(std::span(t.data).subspan(at, n));
      at += n;
      piece = piece * 3 + 1;
    }
  }
  w.finish();
  Bytes out = read_file(path);
  EXPECT_EQ(out.size(), w.total_bytes());
  ::unlink(path.c_str());
  return out;
}

Sample small_sample() {  // a few keys of each kind and three tensors: the truncation/fuzz subject
  Sample s;
  s.metadata.push_back({"general.architecture", GgufValue::string("test")});
  s.metadata.push_back({"n", GgufValue::u32(12)});
  s.metadata.push_back({"f", GgufValue::f32(0.5f)});
  s.metadata.push_back({"tokens", GgufValue::string_array({"<s>", "a", "bc", ""})});
  s.metadata.push_back({"nested", GgufValue::array(GgufValueType::ARRAY,
                                                   {GgufValue::array(GgufValueType::INT32,
                                                                     {GgufValue::i32(-1)})})});
  s.metadata.push_back({"flag", GgufValue::boolean(true)});
  s.tensors.push_back({"w.f32", GgmlType::F32, {3, 2}, random_bytes(24, 1)});
  s.tensors.push_back({"w.q8", GgmlType::Q8_0, {32}, random_bytes(34, 2)});
  s.tensors.push_back({"w.f16", GgmlType::F16, {5}, random_bytes(10, 3)});
  return s;
}

void expect_matches(const Sample& s, const GgufFile& f, uint64_t alignment) {
  size_t skip = 0;  // an automatically added general.alignment comes first
  bool has_key = false;
  for (const auto& kv : s.metadata) has_key |= kv.key == "general.alignment";
  if (alignment != 32 && !has_key) {
    ASSERT_GE(f.metadata().size(), 1u);
    EXPECT_EQ(f.metadata()[0].key, "general.alignment");
    EXPECT_EQ(f.metadata()[0].value.as_uint("a"), alignment);
    skip = 1;
  }
  ASSERT_EQ(f.metadata().size(), s.metadata.size() + skip);
  for (size_t i = 0; i < s.metadata.size(); ++i) {
    EXPECT_EQ(f.metadata()[i + skip].key, s.metadata[i].key);
    EXPECT_TRUE(same_value(f.metadata()[i + skip].value, s.metadata[i].value)) << s.metadata[i].key;
    EXPECT_NE(f.find(s.metadata[i].key), nullptr);
  }
  EXPECT_EQ(f.alignment(), alignment);
  EXPECT_EQ(f.data_offset() % alignment, 0u);
  ASSERT_EQ(f.tensors().size(), s.tensors.size());
  for (size_t i = 0; i < s.tensors.size(); ++i) {
    const auto& t = f.tensors()[i];
    EXPECT_EQ(t.name, s.tensors[i].name);
    EXPECT_EQ(t.type, s.tensors[i].type);
    EXPECT_EQ(t.dims, s.tensors[i].dims);
    EXPECT_EQ(t.offset % alignment, 0u);
    ASSERT_EQ(t.n_bytes, s.tensors[i].data.size());
    if (t.n_bytes > 0)
      EXPECT_EQ(0, std::memcmp(t.data, s.tensors[i].data.data(), t.n_bytes)) << t.name;
    EXPECT_EQ(f.find_tensor(t.name), &t);
  }
}

// ---------------------------------------------------------------- values
TEST(GgufValue, KindsAndAccessors) {
  EXPECT_TRUE(GgufValue::u8(1).is_integer());
  EXPECT_TRUE(GgufValue::i64(-1).is_integer());
  EXPECT_FALSE(GgufValue::f32(1).is_integer());
  EXPECT_TRUE(GgufValue::f64(1).is_float());
  EXPECT_FALSE(GgufValue::boolean(true).is_integer());
  EXPECT_EQ(GgufValue::u32(7).as_int("k"), 7);
  EXPECT_EQ(GgufValue::i16(-7).as_int("k"), -7);
  EXPECT_EQ(GgufValue::i32(7).as_uint("k"), 7u);
  EXPECT_DOUBLE_EQ(GgufValue::i32(-3).as_double("k"), -3.0);
  EXPECT_DOUBLE_EQ(GgufValue::f32(0.5f).as_double("k"), 0.5);
  EXPECT_EQ(GgufValue::string("s").as_string("k"), "s");
  EXPECT_TRUE(GgufValue::boolean(true).as_bool("k"));
  EXPECT_EQ(GgufValue::string_array({"a", "b"}).as_array("k").items.size(), 2u);
}

TEST(GgufValue, AccessorErrorsNameKeyAndKinds) {
  try {
    GgufValue::u32(3).as_string("tokenizer.ggml.model");
    FAIL();
  } catch (const LoadError& e) {
    EXPECT_STREQ(e.what(), "tokenizer.ggml.model: expected STRING, found UINT32");
  }
  try {
    GgufValue::string_array({"x"}).as_int("deepseek4.block_count");
    FAIL();
  } catch (const LoadError& e) {
    EXPECT_STREQ(e.what(), "deepseek4.block_count: expected an integer, found ARRAY of STRING");
  }
  EXPECT_THROW(GgufValue::i8(-1).as_uint("k"), LoadError);
  EXPECT_THROW(GgufValue::u64(uint64_t{1} << 63).as_int("k"), LoadError);
  EXPECT_THROW(GgufValue::string("1").as_double("k"), LoadError);
  EXPECT_THROW(GgufValue::u8(1).as_bool("k"), LoadError);
  EXPECT_THROW(GgufValue::boolean(true).as_int("k"), LoadError);
  EXPECT_THROW(GgufValue::f32(1).as_array("k"), LoadError);
  EXPECT_THROW(GgufValue::array(GgufValueType::UINT8, {GgufValue::i8(1)}), LoadError);
  EXPECT_EQ(gguf_value_type_name(GgufValueType::FLOAT64), "FLOAT64");
}

TEST(GgufUtf8, StrictValidation) {
  EXPECT_TRUE(gguf_is_valid_utf8("plain.key"));
  EXPECT_TRUE(gguf_is_valid_utf8("Grüße 世界 🙂"));
  EXPECT_FALSE(gguf_is_valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(gguf_is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(gguf_is_valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(gguf_is_valid_utf8("\xe4\xb8"));          // truncated sequence
  EXPECT_FALSE(gguf_is_valid_utf8("\x80"));
}

// ---------------------------------------------------------------- round trips
TEST(GgufRoundTrip, EveryValueType) {
  const Sample s = every_value_sample();
  const Bytes bytes = write_sample(s, temp_path("v"));
  auto f = GgufFile::parse(bytes, "values.gguf");
  EXPECT_EQ(f->version(), 3u);
  expect_matches(s, *f, 32);
  EXPECT_TRUE(f->tensors().empty());
}

TEST(GgufRoundTrip, TensorsOfEveryType) {
  Sample s;
  s.metadata.push_back({"general.name", GgufValue::string("tensors")});
  const GgmlType types[] = {GgmlType::F32,  GgmlType::F16,     GgmlType::BF16,
                            GgmlType::Q8_0, GgmlType::Q2_K,    GgmlType::Q4_K,
                            GgmlType::Q8_K, GgmlType::IQ2_XXS, GgmlType::I32};
  uint32_t seed = 10;
  for (GgmlType type : types) {
    const auto& info = ggml_type_info(type);
    const std::vector<uint64_t> dims = {info.block_values * 2, 3, 1, 2};
    const uint64_t bytes = *ggml_row_bytes(type, dims[0]) * 6;
    s.tensors.push_back({"t." + std::string(info.name), type, dims, random_bytes(bytes, seed++)});
    s.tensors.push_back({"t1." + std::string(info.name), type, {info.block_values},
                         random_bytes(info.block_bytes, seed++)});
  }
  s.tensors.push_back({"empty", GgmlType::F32, {0, 4}, {}});  // zero-sized tensor
  const std::string path = temp_path("t");
  const Bytes bytes = write_sample(s, path);
  auto f = GgufFile::parse(bytes, "tensors.gguf");
  expect_matches(s, *f, 32);
  // The last tensor is the empty one: the file is padded to its (aligned) offset; before it the
  // file ends right after the last non-empty tensor (no trailing padding).
  const auto& empty = f->tensors().back();
  const auto& last = f->tensors()[f->tensors().size() - 2];
  EXPECT_EQ(f->data_offset() + empty.offset, bytes.size());
  EXPECT_EQ(empty.offset, (last.offset + last.n_bytes + 31) / 32 * 32);
  const Bytes small = write_sample(small_sample(), temp_path("s"));
  auto fs = GgufFile::parse(small, "small.gguf");
  const auto& tail = fs->tensors().back();
  EXPECT_EQ(fs->data_offset() + tail.offset + tail.n_bytes, small.size());
  EXPECT_EQ(f->find_tensor("t.Q4_K")->n_values, 256u * 2 * 3 * 2);
  EXPECT_EQ(f->find_tensor("nope"), nullptr);
  EXPECT_EQ(f->find("nope"), nullptr);
}

TEST(GgufRoundTrip, AlignmentsOtherThan32) {
  for (uint32_t alignment : {1u, 8u, 64u, 4096u}) {
    Sample s = small_sample();
    const Bytes bytes = write_sample(s, temp_path(std::to_string(alignment)), alignment);
    auto f = GgufFile::parse(bytes, "aligned.gguf");
    expect_matches(s, *f, alignment);
  }
  // A caller-added general.alignment is accepted (also for 32) and written where it was added.
  Sample s = small_sample();
  s.metadata.insert(s.metadata.begin() + 2, {"general.alignment", GgufValue::u32(32)});
  const Bytes bytes32 = write_sample(s, temp_path("k32"));
  auto f = GgufFile::parse(bytes32, "k.gguf");
  expect_matches(s, *f, 32);
  Sample s64 = small_sample();
  s64.metadata.push_back({"general.alignment", GgufValue::u32(64)});
  const Bytes bytes64 = write_sample(s64, temp_path("k64"), 64);
  auto f64 = GgufFile::parse(bytes64, "k.gguf");
  expect_matches(s64, *f64, 64);
  EXPECT_EQ(f64->metadata().back().key, "general.alignment");
}

TEST(GgufRoundTrip, Version2IsAcceptedVersion1IsNot) {
  const Sample s = small_sample();
  Bytes bytes = write_sample(s, temp_path("v2"));
  bytes[4] = 2;
  auto f = GgufFile::parse(bytes, "v2.gguf");
  EXPECT_EQ(f->version(), 2u);
  expect_matches(s, *f, 32);
  bytes[4] = 1;
  EXPECT_NE(load_error_of(bytes).find("version 1 (32-bit counts) is not supported"),
            std::string::npos);
  bytes[4] = 4;
  EXPECT_NE(load_error_of(bytes).find("unsupported GGUF version 4"), std::string::npos);
}

TEST(GgufOpen, MapsFilesAndReportsOpenErrors) {
  const Sample s = small_sample();
  const std::string path = temp_path("open");
  {
    GgufWriter w(path);
    for (const auto& kv : s.metadata) w.add_metadata(kv.key, kv.value);
    for (const auto& t : s.tensors) w.add_tensor(t.name, t.type, t.dims);
    w.write_header();
    for (const auto& t : s.tensors) w.append_tensor_data(t.data);
    w.finish();
  }
  {
    auto f = GgufFile::open(path);
    EXPECT_EQ(f->path(), path);
    EXPECT_EQ(f->file_bytes(), read_file(path).size());
    expect_matches(s, *f, 32);
  }
  ::unlink(path.c_str());
  try {
    GgufFile::open(path);
    FAIL();
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find(path + ": cannot open"), std::string::npos);
  }
  EXPECT_THROW(GgufFile::open(::testing::TempDir()), LoadError);  // a directory
  { std::ofstream(path).flush(); }
  EXPECT_THROW(GgufFile::open(path), LoadError);  // empty
  ::unlink(path.c_str());
}

// ---------------------------------------------------------------- damaged files
TEST(GgufDamage, TruncationAtEveryByteIsALoadError) {
  const Bytes bytes = write_sample(small_sample(), temp_path("trunc"));
  const uint64_t data_offset = GgufFile::parse(bytes, "x")->data_offset();
  for (size_t n = 0; n < bytes.size(); ++n) {
    try {
      parse_copy(bytes, n, "cut.gguf");
      ADD_FAILURE() << "a file cut to " << n << " of " << bytes.size() << " bytes parsed";
    } catch (const LoadError& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind("cut.gguf: ", 0), 0u) << msg;
      if (n < data_offset)
        EXPECT_NE(msg.find("truncated"), std::string::npos) << n << ": " << msg;
      else
        EXPECT_NE(msg.find("extends past end of file"), std::string::npos) << n << ": " << msg;
    }
  }
}

TEST(GgufDamage, TruncationMessageNamesKeyAndArrayItem) {
  Sample s;
  std::vector<std::string> tokens;
  for (int i = 0; i < 2000; ++i) tokens.push_back(std::string(20, 'x') + std::to_string(i));
  s.metadata.push_back({"a", GgufValue::u8(1)});
  s.metadata.push_back({"tokenizer.ggml.tokens", GgufValue::string_array(tokens)});
  const Bytes bytes = write_sample(s, temp_path("msg"));
  // Cut inside item 1021: header 24 + key "a" (8+1+4+1) + key (8+21+4) + type/count 12 + items.
  size_t at = 24 + 14 + 33 + 12;
  for (int i = 0; i < 1021; ++i) at += 8 + tokens[i].size();
  const std::string msg = load_error_of(Bytes(bytes.begin(), bytes.begin() + at + 3), "model.gguf");
  EXPECT_EQ(msg.rfind("model.gguf: truncated while reading metadata key #1 "
                      "('tokenizer.ggml.tokens') array item 1021 (",
                      0),
            0u)
      << msg;
}

TEST(GgufDamage, RandomCorruptionNeverCrashes) {
  const Bytes clean = write_sample(small_sample(), temp_path("fuzz"));
  const uint64_t data_offset = GgufFile::parse(clean, "x")->data_offset();
  std::mt19937_64 rng(20240607);
  int parsed = 0, rejected = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    Bytes b = clean;
    const int n_flips = 1 + static_cast<int>(rng() % 6);
    for (int k = 0; k < n_flips; ++k) {
      // Mostly hit the header/metadata/tensor-info region, where the structure lives.
      const uint64_t limit = rng() % 8 == 0 ? b.size() : data_offset;
      const size_t pos = static_cast<size_t>(rng() % limit);
      switch (rng() % 4) {
        case 0: b[pos] = static_cast<uint8_t>(rng()); break;
        case 1: b[pos] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
        case 2: b[pos] = 0xff; break;
        default: b[pos] = static_cast<uint8_t>(b[pos] + 1); break;
      }
    }
    const size_t len = rng() % 16 == 0 ? static_cast<size_t>(rng() % b.size()) : b.size();
    try {
      parse_copy(b, len, "fuzz.gguf");
      ++parsed;
    } catch (const LoadError&) {
      ++rejected;
    }
  }
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

// ---------------------------------------------------------------- hostile files
void expect_error(const Bytes& bytes, const std::string& fragment) {
  const std::string msg = load_error_of(bytes);
  EXPECT_NE(msg.find(fragment), std::string::npos) << "got: " << msg;
}

TEST(GgufHostile, HugeCountsDoNotAllocate) {
  const uint64_t huge = uint64_t{1} << 60;
  expect_error(Builder().header(0, 1).key("k", GgufValueType::ARRAY).u32(4).u64(huge).bytes(),
               "truncated while reading metadata key #0 ('k') (array of 1152921504606846976 "
               "UINT32 items needs at least 4 bytes each, only 0 bytes left)");
  expect_error(Builder().header(0, 1).key("k", GgufValueType::STRING).u64(huge).u32(0).bytes(),
               "string length 1152921504606846976");
  expect_error(Builder().header(huge, 0).bytes(), "header claims 1152921504606846976 tensors");
  expect_error(Builder().header(0, huge).bytes(), "header claims 1152921504606846976 metadata");
  expect_error(Builder().header(0, 1).str("k").u32(9).u32(9).u64(huge).bytes(),  // array of arrays
               "array of 1152921504606846976 ARRAY items");
  expect_error(Builder().header(1, 0).u64(huge).zeros(64).bytes(),
               "truncated while reading tensor info #0 name (string length 1152921504606846976");
}

TEST(GgufHostile, MetadataValueBudget) {
  // 2^22 + 1 one-byte items fit in the file but exceed the per-file value limit: refused before
  // any per-item allocation (and a second array cannot sneak past the running total).
  const uint64_t n = kGgufMaxMetadataValues + 1;
  Builder big;
  big.header(0, 1).key("big", GgufValueType::ARRAY).u32(0).u64(n).zeros(n);
  expect_error(big.bytes(), "metadata key #0 ('big'): array of 4194305 items exceeds the limit");
  const uint64_t half = kGgufMaxMetadataValues / 2;
  Builder two;
  two.header(0, 2).key("a", GgufValueType::ARRAY).u32(0).u64(half).zeros(half);
  two.key("b", GgufValueType::ARRAY).u32(0).u64(half).zeros(half);
  expect_error(two.bytes(), "metadata key #1 ('b'): array of 2097152 items exceeds the limit");
}

TEST(GgufHostile, BadTensorInfos) {
  auto one_tensor = [](std::vector<uint64_t> dims, uint32_t type, uint64_t offset,
                       size_t data_bytes) {
    Builder b;
    b.header(1, 0).tensor("blk.0.attn_q_a.weight", dims, type, offset).pad_to(32).zeros(data_bytes);
    return b.bytes();
  };
  expect_error(one_tensor({1ull << 40, 1ull << 40}, 0, 0, 64), "element count overflows");
  expect_error(one_tensor({2, 1ull << 63}, 0, 0, 64), "element count overflows");
  expect_error(one_tensor({4}, 99, 0, 64), "tensor info #0 ('blk.0.attn_q_a.weight'): unknown ggml type id 99");
  expect_error(one_tensor({33}, 8, 0, 64), "ne0 33 is not a multiple of the Q8_0 block size 32");
  expect_error(one_tensor({4}, 0, 16, 64), "offset 16 is not a multiple of the alignment 32");
  expect_error(one_tensor({1}, 0, 1ull << 62, 64), "extends past end of file");
  // The message format of the brief: absolute offset, byte count, file size.
  const Bytes past = one_tensor({32}, 0, 32, 100);  // 128 bytes at data+32, only 100 there
  const std::string msg = load_error_of(past, "model.gguf");
  EXPECT_EQ(msg, "model.gguf: tensor 'blk.0.attn_q_a.weight' data [offset " +
                     std::to_string(past.size() - 100 + 32) +
                     ", 128 bytes] extends past end of file (size " + std::to_string(past.size()) +
                     ")");
  for (uint32_t n_dims : {0u, 5u}) {
    Builder b;
    b.header(1, 0).str("t").u32(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) b.u64(1);
    b.u32(0).u64(0).pad_to(32).zeros(64);
    expect_error(b.bytes(), "n_dims " + std::to_string(n_dims) + " (must be 1..4)");
  }
}

TEST(GgufHostile, OverlapsAndDuplicates) {
  Builder overlap;
  overlap.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {16}, 0, 32).pad_to(32).zeros(128);
  expect_error(overlap.bytes(), "tensor 'a' [data offset 0, 64 bytes] overlaps tensor 'b'");
  // An empty tensor between them must not hide the overlap.
  Builder hidden;
  hidden.header(3, 0).tensor("a", {32}, 0, 0).tensor("z", {0}, 0, 32).tensor("b", {8}, 0, 96)
      .pad_to(32).zeros(256);
  expect_error(hidden.bytes(), "tensor 'a' [data offset 0, 128 bytes] overlaps tensor 'b'");
  Builder dup_tensor;
  dup_tensor.header(2, 0).tensor("a", {8}, 0, 0).tensor("a", {8}, 0, 32).pad_to(32).zeros(64);
  expect_error(dup_tensor.bytes(), "tensor info #1 ('a'): duplicate tensor name");
  expect_error(Builder().header(0, 2).key("k", GgufValueType::UINT8).u8(1)
                   .key("k", GgufValueType::UINT8).u8(2).bytes(),
               "metadata key #1 ('k'): duplicate key");
}

TEST(GgufHostile, BadAlignmentValues) {
  auto with_alignment = [](GgufValueType type, uint64_t v) {
    Builder b;
    b.header(0, 1).key("general.alignment", type);
    if (type == GgufValueType::UINT64) b.u64(v); else b.u32(static_cast<uint32_t>(v));
    return b.bytes();
  };
  expect_error(with_alignment(GgufValueType::UINT32, 3), "general.alignment 3 is not a non-zero power of two");
  expect_error(with_alignment(GgufValueType::UINT32, 0), "general.alignment 0 is not a non-zero");
  expect_error(with_alignment(GgufValueType::UINT64, 64), "general.alignment has type UINT64, expected UINT32");
  EXPECT_EQ(load_error_of(with_alignment(GgufValueType::UINT32, 64)), "<no error>");
}

TEST(GgufHostile, BadMetadataEncodings) {
  expect_error(Builder().u32(0x46554746).u32(3).u64(0).u64(0).bytes(), "bad magic 0x46554746");
  expect_error(Builder().header(0, 0, 0x03000000).bytes(), "(a big-endian file?)");
  expect_error(Builder().header(0, 1).key("k", GgufValueType::BOOL).u8(2).bytes(),
               "metadata key #0 ('k'): BOOL value 2 is neither 0 nor 1");
  expect_error(Builder().header(0, 1).str("k").u32(13).u64(0).bytes(), "unknown value type 13");
  expect_error(Builder().header(0, 1).key("k", GgufValueType::ARRAY).u32(77).u64(0).bytes(),
               "unknown array element type 77");
  expect_error(Builder().header(0, 1).str("\xff\xfe").u32(0).u8(0).bytes(), "key is not valid UTF-8");
  expect_error(Builder().header(0, 1).str("").u32(0).u8(0).bytes(), "empty key");
  expect_error(Builder().header(1, 0).str("t\xc0").u32(1).u64(1).u32(0).u64(0).pad_to(32).zeros(4).bytes(),
               "tensor name is not valid UTF-8");
  // Nesting: depth 8 is fine (covered by the round trip), depth 9 is refused.
  Builder deep;
  deep.header(0, 1).key("deep", GgufValueType::ARRAY);
  for (int d = 1; d < kGgufMaxArrayDepth + 1; ++d) deep.u32(9).u64(1);
  deep.u32(0).u64(1).u8(5);
  expect_error(deep.bytes(), "arrays nested deeper than 8");
}

// ---------------------------------------------------------------- writer
TEST(GgufWriterTest, MisuseIsAnError) {
  EXPECT_THROW(GgufWriter("x", 3), LoadError);
  EXPECT_THROW(GgufWriter("x", 0), LoadError);
  const std::string path = temp_path("misuse");
  {
    GgufWriter w(path);
    w.add_metadata("k", GgufValue::u8(1));
    EXPECT_THROW(w.add_metadata("k", GgufValue::u8(2)), LoadError);  // duplicate
    EXPECT_THROW(w.add_metadata("", GgufValue::u8(2)), LoadError);
    EXPECT_THROW(w.add_metadata("general.alignment", GgufValue::u32(64)), LoadError);
    EXPECT_THROW(w.add_metadata("general.alignment", GgufValue::u64(32)), LoadError);
    GgufValue bad;  // UINT8 claiming to be a string
    bad.type = GgufValueType::UINT8;
    bad.value = std::string("x");
    EXPECT_THROW(w.add_metadata("bad", bad), LoadError);
    bad.value = uint64_t{300};
    EXPECT_THROW(w.add_metadata("bad", bad), LoadError);
    GgufValue mixed = GgufValue::array(GgufValueType::UINT8, {});
    std::get<GgufArray>(mixed.value).items.push_back(GgufValue::i8(1));
    EXPECT_THROW(w.add_metadata("mixed", mixed), LoadError);
    EXPECT_THROW(w.add_metadata("deep", nested(kGgufMaxArrayDepth + 1)), LoadError);
    EXPECT_THROW(w.add_tensor("t", GgmlType::Q8_0, {33}), LoadError);
    EXPECT_THROW(w.add_tensor("t", GgmlType::F32, {}), LoadError);
    EXPECT_THROW(w.add_tensor("t", GgmlType::F32, {1, 1, 1, 1, 1}), LoadError);
    EXPECT_THROW(w.add_tensor("t", static_cast<GgmlType>(99), {1}), LoadError);
    EXPECT_THROW(w.add_tensor("t", GgmlType::F32, {1ull << 62, 4}), LoadError);
    w.add_tensor("t", GgmlType::F32, {4});
    EXPECT_THROW(w.add_tensor("t", GgmlType::F32, {4}), LoadError);  // duplicate
    w.add_tensor("u", GgmlType::F16, {4});
    const Bytes data(16, 1);
    EXPECT_THROW(w.append_tensor_data(data), LoadError);  // before write_header
    EXPECT_THROW(w.finish(), LoadError);                  // before write_header
    w.write_header();
    EXPECT_THROW(w.write_header(), LoadError);
    EXPECT_THROW(w.add_metadata("late", GgufValue::u8(1)), LoadError);
    EXPECT_THROW(w.add_tensor("late", GgmlType::F32, {1}), LoadError);
    EXPECT_THROW(w.append_tensor_data(Bytes(17, 1)), LoadError);  // more than tensor 't'
    w.append_tensor_data(std::span(data).first(10));
    EXPECT_THROW(w.append_tensor_data(std::span(data).first(8)), LoadError);  // crosses into 'u'
    EXPECT_THROW(w.finish(), LoadError);  // incomplete
    w.append_tensor_data(std::span(data).first(6));
    w.append_tensor_data(std::span(data).first(8));
    EXPECT_THROW(w.append_tensor_data(std::span(data).first(1)), LoadError);  // all written
    w.finish();
    EXPECT_THROW(w.finish(), LoadError);
    EXPECT_THROW(w.append_tensor_data(data), LoadError);
  }
  auto f = GgufFile::open(path);
  EXPECT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->find_tensor("u")->offset, 32u);
  ::unlink(path.c_str());
}

TEST(GgufWriterTest, UnfinishedWriterRemovesItsFile) {
  const std::string path = temp_path("partial");
  {
    GgufWriter w(path);
    w.add_tensor("t", GgmlType::F32, {1024});
    w.write_header();
    EXPECT_TRUE(file_exists(path));
    w.append_tensor_data(Bytes(100, 0));
  }  // destroyed without finish: must not throw, deletes the partial file
  EXPECT_FALSE(file_exists(path));
  EXPECT_THROW(GgufWriter("/nonexistent-dir/x.gguf").write_header(), LoadError);
}

TEST(GgufWriterTest, DryRunComputesSizesWithoutAFile) {
  const Sample s = small_sample();
  const std::string real_path = temp_path("real");
  const Bytes real = write_sample(s, real_path, 64);
  const std::string dry_path = temp_path("dry");
  GgufWriter dry(dry_path, 64, GgufWriteMode::kDryRun);
  for (const auto& kv : s.metadata) dry.add_metadata(kv.key, kv.value);
  for (const auto& t : s.tensors) dry.add_tensor(t.name, t.type, t.dims);
  auto f = GgufFile::parse(real, "real.gguf");
  EXPECT_EQ(dry.header_bytes(), f->data_offset());  // known before write_header
  EXPECT_EQ(dry.total_bytes(), real.size());
  for (size_t i = 0; i < s.tensors.size(); ++i)
    EXPECT_EQ(dry.tensors()[i].offset, f->tensors()[i].offset);
  dry.write_header();
  for (const auto& t : s.tensors) dry.append_tensor_data(t.data);
  EXPECT_THROW(dry.append_tensor_data(Bytes(1, 0)), LoadError);
  dry.finish();
  EXPECT_FALSE(file_exists(dry_path));
}

TEST(GgufWriterTest, LargeAppendsBypassTheBuffer) {
  // A tensor larger than the writer's 8 MiB buffer, written in one append and in odd pieces.
  const Bytes big = random_bytes((size_t{9} << 20) + 4, 77);
  Sample s;
  s.tensors.push_back({"big", GgmlType::F32, {big.size() / 4}, big});
  s.tensors.push_back({"small", GgmlType::I32, {3}, random_bytes(12, 78)});
  const std::string path = temp_path("big");
  {
    GgufWriter w(path);
    for (const auto& t : s.tensors) w.add_tensor(t.name, t.type, t.dims);
    w.write_header();
    w.append_tensor_data(big);
    w.append_tensor_data(s.tensors[1].data);
    w.finish();
  }
  auto f = GgufFile::open(path);
  expect_matches(s, *f, 32);
  ::unlink(path.c_str());
}

}  // namespace
}  // namespace ds4
