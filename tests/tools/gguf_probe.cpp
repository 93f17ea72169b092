// gguf_probe: test helper for the cross-check against the Python `gguf` package.
//   gguf_probe write-sample OUT [ALIGNMENT]  writes a file with every metadata type (nested
//       arrays, UTF-8 string arrays) and F32/F16/BF16/Q8_0/Q2_K/Q4_K/IQ2_XXS/I32 tensors of
//       seeded pseudo-random content, through GgufWriter;
//   gguf_probe dump FILE  prints our reader's view of FILE as JSON (metadata with types and
//       values, tensors with type, dims, offsets, byte counts and an FNV-1a 64 hash of the bytes).
// Used by tests/python/test_gguf_crosscheck.py; exit status 1 with the LoadError on bad files.
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/gguf.h"
#include "kernels/f16.h"

namespace ds4 {
namespace {

// splitmix64: a tiny seeded generator so the sample is identical on every machine.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() { return static_cast<float>(next() >> 40) / static_cast<float>(1 << 24) * 2 - 1; }

 private:
  uint64_t state_;
};

uint64_t fnv1a64(const uint8_t* p, uint64_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint64_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

// ---------------------------------------------------------------- write-sample
void add_sample_metadata(GgufWriter& w) {
  using V = GgufValue;
  using T = GgufValueType;
  w.add_metadata("general.architecture", V::string("probe"));
  w.add_metadata("probe.u8", V::u8(200));
  w.add_metadata("probe.i8", V::i8(-100));
  w.add_metadata("probe.u16", V::u16(65535));
  w.add_metadata("probe.i16", V::i16(-32768));
  w.add_metadata("probe.u32", V::u32(4000000000u));
  w.add_metadata("probe.i32", V::i32(-2000000000));
  w.add_metadata("probe.u64", V::u64(18446744073709551615ull));
  w.add_metadata("probe.i64", V::i64(-9223372036854775807ll - 1));
  w.add_metadata("probe.f32", V::f32(0.1f));
  w.add_metadata("probe.f64", V::f64(-2.718281828459045));
  w.add_metadata("probe.bool_true", V::boolean(true));
  w.add_metadata("probe.bool_false", V::boolean(false));
  w.add_metadata("probe.string_empty", V::string(""));
  w.add_metadata("probe.string_utf8", V::string("naïve café — 日本語 — 🙂 \"quoted\" back\\slash\ttab\nline"));
  w.add_metadata("probe.arr_u8", V::array(T::UINT8, {V::u8(0), V::u8(255)}));
  w.add_metadata("probe.arr_i8", V::array(T::INT8, {V::i8(-128), V::i8(127)}));
  w.add_metadata("probe.arr_u16", V::array(T::UINT16, {V::u16(1), V::u16(65535)}));
  w.add_metadata("probe.arr_i16", V::array(T::INT16, {V::i16(-2), V::i16(3)}));
  w.add_metadata("probe.arr_u32", V::array(T::UINT32, {V::u32(4), V::u32(4), V::u32(128)}));
  w.add_metadata("probe.arr_i32", V::array(T::INT32, {V::i32(-1), V::i32(0), V::i32(1)}));
  w.add_metadata("probe.arr_u64", V::array(T::UINT64, {V::u64(1ull << 40)}));
  w.add_metadata("probe.arr_i64", V::array(T::INT64, {V::i64(-(1ll << 40))}));
  w.add_metadata("probe.arr_f32", V::array(T::FLOAT32, {V::f32(1.5f), V::f32(-0.25f), V::f32(3e-8f)}));
  w.add_metadata("probe.arr_f64", V::array(T::FLOAT64, {V::f64(1e-300), V::f64(6.02214076e23)}));
  w.add_metadata("probe.arr_bool", V::array(T::BOOL, {V::boolean(false), V::boolean(true)}));
  w.add_metadata("probe.arr_empty", V::array(T::UINT32, {}));
  w.add_metadata("probe.arr_strings", V::string_array({"<｜begin▁of▁sentence｜>", "Ġthe", "",
                                                        "😀", "中文", "a b"}));
  w.add_metadata("probe.arr_nested_u32",
                 V::array(T::ARRAY, {V::array(T::UINT32, {V::u32(1), V::u32(2)}),
                                     V::array(T::UINT32, {V::u32(3)})}));
  w.add_metadata("probe.arr_nested_str",
                 V::array(T::ARRAY, {V::string_array({"x", "ÿ"}), V::string_array({"z"})}));
  w.add_metadata("probe.arr_nested_3",
                 V::array(T::ARRAY, {V::array(T::ARRAY, {V::array(T::INT16, {V::i16(-7)})})}));
  std::vector<std::string> vocab;
  for (int i = 0; i < 1000; ++i) vocab.push_back("tok_" + std::to_string(i) + (i % 7 ? "" : "é"));
  w.add_metadata("tokenizer.ggml.tokens", V::string_array(vocab));
}

struct SampleTensor {
  const char* name;
  GgmlType type;
  std::vector<uint64_t> dims;
};

// Plain types get seeded values (finite floats, small ints); quantised types seeded raw bytes.
std::vector<uint8_t> sample_tensor_bytes(const GgufTensorInfo& t, Rng& rng) {
  std::vector<uint8_t> out(t.n_bytes);
  for (uint64_t i = 0; i < t.n_values; ++i) {
    const float f = rng.uniform();
    if (t.type == GgmlType::F32) {
      std::memcpy(&out[i * 4], &f, 4);
    } else if (t.type == GgmlType::I32) {
      const auto v = static_cast<int32_t>(rng.next() % 200001) - 100000;
      std::memcpy(&out[i * 4], &v, 4);
    } else if (t.type == GgmlType::F16 || t.type == GgmlType::BF16) {
      const uint16_t h = t.type == GgmlType::F16 ? f32_to_f16(f)
                                                   : static_cast<uint16_t>(f32_bits(f) >> 16);
      std::memcpy(&out[i * 2], &h, 2);
    } else {
      break;  // a quantised type
    }
  }
  if (ggml_type_info(t.type).block_values > 1)
    for (auto& b : out) b = static_cast<uint8_t>(rng.next());
  return out;
}

int write_sample(const std::string& path, uint32_t alignment) {
  const std::vector<SampleTensor> tensors = {
      {"probe.f32", GgmlType::F32, {64, 3}},
      {"probe.f16", GgmlType::F16, {32, 4}},
      {"probe.bf16", GgmlType::BF16, {16, 2, 3}},
      {"probe.q8_0", GgmlType::Q8_0, {64, 2}},
      {"probe.q2_k", GgmlType::Q2_K, {256, 2}},
      {"probe.q4_k", GgmlType::Q4_K, {512, 1, 2}},
      {"probe.iq2_xxs", GgmlType::IQ2_XXS, {256, 3}},
      {"probe.i32", GgmlType::I32, {7, 5, 2, 3}},
  };
  GgufWriter w(path, alignment);
  add_sample_metadata(w);
  for (const auto& t : tensors) w.add_tensor(t.name, t.type, t.dims);
  w.write_header();
  Rng rng(0x5EED);
  for (const auto& info : w.tensors()) w.append_tensor_data(sample_tensor_bytes(info, rng));
  w.finish();
  return 0;
}

// ---------------------------------------------------------------- dump
void put_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<uint8_t>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  out += '"';
}

void put_json_double(std::string& out, double v) {
  if (std::isnan(v)) { out += "NaN"; return; }
  if (std::isinf(v)) { out += v > 0 ? "Infinity" : "-Infinity"; return; }
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  out += buf;
}

// Scalars as JSON values; strings as JSON strings when valid UTF-8, else {"bytes_hex": ...};
// arrays as {"element_type": ..., "items": [...]}.
void put_json_value(std::string& out, const GgufValue& v) {
  switch (v.type) {
    case GgufValueType::BOOL: out += std::get<bool>(v.value) ? "true" : "false"; return;
    case GgufValueType::FLOAT32:
    case GgufValueType::FLOAT64: put_json_double(out, std::get<double>(v.value)); return;
    case GgufValueType::STRING: {
      const auto& s = std::get<std::string>(v.value);
      if (gguf_is_valid_utf8(s)) { put_json_string(out, s); return; }
      out += "{\"bytes_hex\": \"";
      for (const char ch : s) {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%02x", static_cast<uint8_t>(ch));
        out += buf;
      }
      out += "\"}";
      return;
    }
    case GgufValueType::ARRAY: {
      const auto& arr = std::get<GgufArray>(v.value);
      out += "{\"element_type\": \"";
      out += gguf_value_type_name(arr.element_type);
      out += "\", \"items\": [";
      for (size_t i = 0; i < arr.items.size(); ++i) {
        if (i) out += ", ";
        put_json_value(out, arr.items[i]);
      }
      out += "]}";
      return;
    }
    default:
      out += v.is_integer() && std::holds_alternative<int64_t>(v.value)
                 ? std::to_string(std::get<int64_t>(v.value))
                 : std::to_string(std::get<uint64_t>(v.value));
  }
}

void put_json_tensor(std::string& out, const GgufFile& f, const GgufTensorInfo& t) {
  char buf[256];
  out += "    {\"name\": ";
  put_json_string(out, t.name);
  out += ", \"type\": \"";
  out += ggml_type_name(t.type);
  out += "\", \"type_id\": " + std::to_string(static_cast<uint32_t>(t.type)) + ", \"dims\": [";
  for (size_t d = 0; d < t.dims.size(); ++d) out += (d ? ", " : "") + std::to_string(t.dims[d]);
  std::snprintf(buf, sizeof buf,
                "], \"offset\": %" PRIu64 ", \"file_offset\": %" PRIu64 ", \"n_values\": %" PRIu64
                ", \"n_bytes\": %" PRIu64 ", \"fnv1a64\": \"%016" PRIx64 "\"}",
                t.offset, f.data_offset() + t.offset, t.n_values, t.n_bytes,
                fnv1a64(t.data, t.n_bytes));
  out += buf;
}

int dump(const std::string& path) {
  const auto f = GgufFile::open(path);
  std::string out = "{\n  \"version\": " + std::to_string(f->version()) +
                    ",\n  \"alignment\": " + std::to_string(f->alignment()) +
                    ",\n  \"data_offset\": " + std::to_string(f->data_offset()) +
                    ",\n  \"file_bytes\": " + std::to_string(f->file_bytes()) +
                    ",\n  \"metadata\": [\n";
  for (size_t i = 0; i < f->metadata().size(); ++i) {
    const auto& kv = f->metadata()[i];
    out += "    {\"key\": ";
    put_json_string(out, kv.key);
    out += ", \"type\": \"";
    out += gguf_value_type_name(kv.value.type);
    out += "\", \"value\": ";
    put_json_value(out, kv.value);
    out += i + 1 < f->metadata().size() ? "},\n" : "}\n";
  }
  out += "  ],\n  \"tensors\": [\n";
  for (size_t i = 0; i < f->tensors().size(); ++i) {
    put_json_tensor(out, *f, f->tensors()[i]);
    out += i + 1 < f->tensors().size() ? ",\n" : "\n";
  }
  out += "  ]\n}\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace
}  // namespace ds4

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  try {
    if (cmd == "write-sample" && (argc == 3 || argc == 4))
      return ds4::write_sample(argv[2], argc == 4 ? static_cast<uint32_t>(std::stoul(argv[3])) : 32);
    if (cmd == "dump" && argc == 3) return ds4::dump(argv[2]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gguf_probe: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: gguf_probe write-sample OUT [ALIGNMENT] | gguf_probe dump FILE\n");
  return 2;
}
