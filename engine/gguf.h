// GGUF v3 (and v2) container: typed metadata values, the mmap'ed reader and the streaming writer.
// Reader invariant: every size, count and offset read from the file is bounds-checked before use;
// a truncated, corrupt or hostile file throws LoadError naming what is wrong, never reads out of
// bounds. Writer invariant: tensor data is written in declaration order, each tensor aligned.
// Used by model loading (weights, config, tokenizer), the synthetic-model generator and converters.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "engine/load_error.h"
#include "kernels/ggml_type.h"

namespace ds4 {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kGgufDefaultAlignment = 32;
// Limits the reader enforces (and the writer refuses to exceed) so a hostile file cannot make us
// recurse deeply or allocate without bound: arrays nest at most 8 deep (an array of scalars is
// depth 1), and one file holds at most 2^22 metadata values counting every array item (the real
// model has ~0.4 M: vocabulary, merges, token types; 2^22 values bound the parsed form to ~200 MB).
constexpr int kGgufMaxArrayDepth = 8;
constexpr uint64_t kGgufMaxMetadataValues = uint64_t{1} << 22;
constexpr uint32_t kGgufMaxDims = 4;

enum class GgufValueType : uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
  BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
std::string_view gguf_value_type_name(GgufValueType type);
// Strict UTF-8 (no overlong forms, surrogates or code points above U+10FFFF): the check applied
// to keys and tensor names by the reader and the writer.
bool gguf_is_valid_utf8(std::string_view s);

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
  // Throws LoadError when an item's type is not element_type.
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

// Reader rules beyond the format itself (each violation is a LoadError naming the key / tensor):
// * versions 2 and 3 (identical layout, u64 counts); version 1 (u32 counts) is refused.
// * keys and tensor names are non-empty, valid UTF-8 and unique. STRING values are kept as raw
//   bytes, not validated: tokenizer vocabularies legitimately hold byte tokens / partial UTF-8.
// * BOOL values are 0 or 1; general.alignment, if present, is a UINT32 non-zero power of two.
// * every tensor: n_dims 1..4, known ggml type, ne0 a multiple of the block size, element count
//   fits int64, offset a multiple of the alignment, data inside the file, no two tensors overlap.
//   Zero-sized dims are accepted (an empty tensor). Bytes after the last tensor are ignored.
// * the data section starts at the tensor-info table's end rounded up to the alignment; a file
//   without tensors may end before that padding.
class GgufFile {
 public:
  // Maps and parses the file. Throws LoadError on any structural problem.
  static std::unique_ptr<GgufFile> open(const std::string& path);
  // Parses an in-memory image (tests, fuzzing). The buffer must outlive the GgufFile.
  static std::unique_ptr<GgufFile> parse(std::span<const uint8_t> bytes, std::string name);
  // A temporary buffer would dangle as soon as parse returns: refuse it at compile time.
  static std::unique_ptr<GgufFile> parse(std::vector<uint8_t>&& bytes, std::string name) = delete;
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
  // Name -> index; the views point into the file image, which lives as long as this object.
  std::unordered_map<std::string_view, size_t> key_index_;
  std::unordered_map<std::string_view, size_t> tensor_index_;
};

// Dry run: the writer validates and lays out everything (header_bytes, total_bytes, tensor
// offsets, byte counts of appended data) exactly as for a real write but creates no file.
enum class GgufWriteMode { kWrite, kDryRun };

// Streaming writer: declare metadata and tensors, write the header once, then stream each
// tensor's bytes in declaration order (any number of append calls per tensor). Files larger than
// RAM are fine: nothing but the header is held in memory. Throws LoadError on I/O errors and
// on misuse (wrong order, wrong byte count).
// * Writes GGUF v3. Metadata is written in the order added. If alignment != 32 and the caller did
//   not add general.alignment, it is written as the first key; a caller-added general.alignment
//   must be a UINT32 equal to the writer's alignment.
// * An append may not cross a tensor boundary; when a tensor's last byte arrives the writer pads
//   with zeros to the alignment and moves on to the next tensor (zero-byte tensors are skipped).
//   The file ends at the last tensor's last byte (no trailing padding unless the last tensors
//   are empty: then it ends at their aligned offset so the reader finds them inside the file).
// * The file is created by write_header(). A writer destroyed without a successful finish()
//   (error, exception unwinding) closes and deletes the partial file and never throws.
// * header_bytes() and total_bytes() reflect what has been declared so far and may be called at
//   any time, also in GgufWriteMode::kDryRun.
class GgufWriter {
 public:
  explicit GgufWriter(std::string path, uint32_t alignment = kGgufDefaultAlignment,
                      GgufWriteMode mode = GgufWriteMode::kWrite);
  ~GgufWriter();
  void add_metadata(std::string key, GgufValue value);
  void add_tensor(std::string name, GgmlType type, std::vector<uint64_t> dims);
  void write_header();            // header + metadata + tensor infos + padding to alignment
  void append_tensor_data(std::span<const uint8_t> bytes);  // next bytes of the current tensor
  void finish();                  // checks every tensor was written completely, closes
  uint64_t header_bytes() const;  // bytes before the data section (incl. padding)
  uint64_t total_bytes() const;   // final file size (once all tensors were added)
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

 private:
  void skip_empty_tensors();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<GgufTensorInfo> tensors_;
};

}  // namespace ds4
