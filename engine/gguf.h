// GGUF v3 (and v2) container: typed metadata values, the mmap'ed reader and the streaming writer.
// Reader invariant: every size, count and offset read from the file is bounds-checked before use;
// a truncated, corrupt or hostile file throws LoadError naming what is wrong, never reads out of
// bounds. Writer invariant: tensor data is written in declaration order, each tensor aligned.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/load_error.h"
#include "kernels/ggml_type.h"

namespace ds4 {

enum class GgufValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
std::string_view gguf_value_type_name(GgufValueType type);

struct GgufValue;
struct GgufArray {
  GgufValueType element_type = GgufValueType::UINT8;
  std::vector<GgufValue> items;  // every item has type element_type (arrays may nest)
};

// One metadata value. Scalars keep their exact GGUF type so a file round-trips unchanged.
struct GgufValue {
  GgufValueType type = GgufValueType::UINT8;
  std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> value;

  static GgufValue u8(uint8_t v);
  static GgufValue i8(int8_t v);
  static GgufValue u16(uint16_t v);
  static GgufValue i16(int16_t v);
  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue u64(uint64_t v);
  static GgufValue i64(int64_t v);
  static GgufValue f32(float v);
  static GgufValue f64(double v);
  static GgufValue boolean(bool v);
  static GgufValue string(std::string v);
  static GgufValue array(GgufValueType element_type, std::vector<GgufValue> items);
  static GgufValue string_array(const std::vector<std::string>& items);

  bool is_integer() const;  // any of the 8 integer types
  bool is_float() const;    // FLOAT32 or FLOAT64
  // Checked accessors: throw LoadError (naming `what`) when the value has another kind or is out
  // of the target range.
  int64_t as_int(std::string_view what) const;
  uint64_t as_uint(std::string_view what) const;
  double as_double(std::string_view what) const;  // integers are accepted too
  bool as_bool(std::string_view what) const;
  const std::string& as_string(std::string_view what) const;
  const GgufArray& as_array(std::string_view what) const;
};

struct GgufKeyValue {
  std::string key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // [ne0, ne1, ...], ne0 contiguous
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;         // relative to the start of the data section
  uint64_t n_values = 0;       // product of dims
  uint64_t n_bytes = 0;        // bytes of the data
  const uint8_t* data = nullptr;  // into the mapping (reader only)
};

class GgufFile {
 public:
  // Maps and parses the file. Throws LoadError on any structural problem.
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // Parses an in-memory image (tests, fuzzing). The buffer must outlive the GgufFile.
  static std::unique_ptr<GgufFile> parse(std::span<const uint8_t> bytes, std::string name);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t file_bytes() const { return size_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute start of the data section

  const std::vector<GgufKeyValue>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;  // nullptr when absent
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;  // nullptr when absent

 private:
  GgufFile() = default;
  void parse_all();
  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  void* mapping_ = nullptr;  // non-null when we own an mmap of size_ bytes
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufKeyValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
};

// Streaming writer: declare metadata and tensors, write the header once, then stream each
// tensor's bytes in declaration order (any number of append calls per tensor). Files larger than
// RAM are fine: nothing but the header is held in memory. Throws LoadError on I/O errors and
// on misuse (wrong order, wrong byte count).
class GgufWriter {
 public:
  explicit GgufWriter(std::string path, uint32_t alignment = 32);
  ~GgufWriter();
  void add_metadata(std::string key, GgufValue value);
  void add_tensor(std::string name, GgmlType type, std::vector<uint64_t> dims);
  void write_header();            // header + metadata + tensor infos + padding to alignment
  void append_tensor_data(std::span<const uint8_t> bytes);  // next bytes of the current tensor
  void finish();                  // checks every tensor was written completely, closes
  uint64_t header_bytes() const;  // bytes before the data section (valid after write_header)
  uint64_t total_bytes() const;   // final file size (valid after all tensors were added)
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace ds4
