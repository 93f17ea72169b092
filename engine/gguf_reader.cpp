// GgufFile: maps a GGUF v2/v3 file read-only and parses header, metadata and tensor directory.
// Invariant: no byte is read before the cursor proved it lies inside the image, and no count read
// from the file sizes an allocation before it was checked against the bytes that remain (each item
// needs at least its minimum encoded size), so hostile files fail with LoadError, never OOB/OOM.
// Called by model loading and tools; the rules it enforces are listed above GgufFile in gguf.h.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <unordered_set>
#include <utility>

#include "engine/gguf.h"

namespace ds4 {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF is read by memcpy: little-endian");

// Internal failure raised deep in the parser; callers prepend where they are ("array item 7")
// and the top level turns it into a LoadError with the file name.
struct ParseFailure {
  bool truncated;       // ran out of bytes (possibly because a length/count was absurd)
  std::string problem;  // what exactly went wrong
  std::string where;    // " array item 3 array item 1" (innermost last), built while unwinding
};

[[noreturn]] void fail(bool truncated, std::string problem) {
  throw ParseFailure{truncated, std::move(problem), {}};
}

// Reads little-endian fields from [base, base + size) and checks every access.
class Cursor {
 public:
  Cursor(const uint8_t* base, uint64_t size) : base_(base), size_(size) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void need(uint64_t n_bytes) const {
    if (n_bytes > remaining())
      fail(true, "need " + std::to_string(n_bytes) + " bytes at offset " + std::to_string(pos_) +
                     ", file size " + std::to_string(size_));
  }
  template <class T>
  T read() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  // u64 length + bytes; the view points into the image.
  std::string_view read_string() {
    const uint64_t len = read<uint64_t>();
    if (len > remaining())
      fail(true, "string length " + std::to_string(len) + " at offset " +
                     std::to_string(pos_ - 8) + " exceeds the " + std::to_string(remaining()) +
                     " bytes left in the file");
    std::string_view s(reinterpret_cast<const char*>(base_ + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

}  // namespace

bool gguf_is_valid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) { ++i; continue; }
    int len = 0;
    uint32_t cp = 0, min_cp = 0;
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min_cp = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min_cp = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min_cp = 0x10000; }
    else return false;
    if (n - i < static_cast<size_t>(len)) return false;
    for (int k = 1; k < len; ++k) {
      const auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

namespace {

// Printable form of a name for error messages: at most 80 bytes, control bytes escaped.
std::string quoted(std::string_view s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 80; ++i) {
    const auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x20 || c == 0x7F) {
      static const char* kHex = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 80) out += "...";
  return out + "'";
}

// Encoded size of one scalar of `type` (0 for STRING/ARRAY, which are variable).
uint64_t scalar_bytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::BOOL: return 1;
    case GgufValueType::UINT16: case GgufValueType::INT16: return 2;
    case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::FLOAT32: return 4;
    case GgufValueType::UINT64: case GgufValueType::INT64: case GgufValueType::FLOAT64: return 8;
    default: return 0;
  }
}

// Smallest possible encoding of one value: strings need their length, arrays type + count.
uint64_t min_value_bytes(GgufValueType type) {
  if (type == GgufValueType::STRING) return 8;
  if (type == GgufValueType::ARRAY) return 12;
  return scalar_bytes(type);
}

GgufValueType read_value_type(Cursor& c, const char* what) {
  const uint32_t raw = c.read<uint32_t>();
  if (raw > static_cast<uint32_t>(GgufValueType::FLOAT64))
    fail(false, std::string("unknown ") + what + " " + std::to_string(raw));
  return static_cast<GgufValueType>(raw);
}

// Parses metadata values; counts every value against kGgufMaxMetadataValues.
class ValueParser {
 public:
  explicit ValueParser(Cursor& c) : c_(c) {}

  GgufValue read(GgufValueType type, int depth) {
    if (++n_values_ > kGgufMaxMetadataValues)
      fail(false, "more than " + std::to_string(kGgufMaxMetadataValues) + " metadata values");
    switch (type) {
      case GgufValueType::UINT8: return GgufValue::u8(c_.read<uint8_t>());
      case GgufValueType::INT8: return GgufValue::i8(c_.read<int8_t>());
      case GgufValueType::UINT16: return GgufValue::u16(c_.read<uint16_t>());
      case GgufValueType::INT16: return GgufValue::i16(c_.read<int16_t>());
      case GgufValueType::UINT32: return GgufValue::u32(c_.read<uint32_t>());
      case GgufValueType::INT32: return GgufValue::i32(c_.read<int32_t>());
      case GgufValueType::UINT64: return GgufValue::u64(c_.read<uint64_t>());
      case GgufValueType::INT64: return GgufValue::i64(c_.read<int64_t>());
      case GgufValueType::FLOAT32: return GgufValue::f32(c_.read<float>());
      case GgufValueType::FLOAT64: return GgufValue::f64(c_.read<double>());
      case GgufValueType::BOOL: {
        const uint8_t b = c_.read<uint8_t>();
        if (b > 1) fail(false, "BOOL value " + std::to_string(b) + " is neither 0 nor 1");
        return GgufValue::boolean(b != 0);
      }
      case GgufValueType::STRING: return GgufValue::string(std::string(c_.read_string()));
      case GgufValueType::ARRAY: return read_array(depth + 1);
    }
    fail(false, "unknown value type");
  }

 private:
  GgufValue read_array(int depth) {
    if (depth > kGgufMaxArrayDepth)
      fail(false, "arrays nested deeper than " + std::to_string(kGgufMaxArrayDepth));
    const GgufValueType element_type = read_value_type(c_, "array element type");
    const uint64_t count = c_.read<uint64_t>();
    // Bound the count by the bytes left before reserving anything.
    const uint64_t min_bytes = min_value_bytes(element_type);
    if (count > c_.remaining() / min_bytes)
      fail(true, "array of " + std::to_string(count) + " " +
                     std::string(gguf_value_type_name(element_type)) + " items needs at least " +
                     std::to_string(min_bytes) + " bytes each, only " +
                     std::to_string(c_.remaining()) + " bytes left");
    // And by the value budget, so the reserve below stays bounded too.
    if (count > kGgufMaxMetadataValues - n_values_)
      fail(false, "array of " + std::to_string(count) + " items exceeds the limit of " +
                      std::to_string(kGgufMaxMetadataValues) + " metadata values per file");
    GgufValue out;
    out.type = GgufValueType::ARRAY;
    GgufArray& arr = out.value.emplace<GgufArray>();
    arr.element_type = element_type;
    arr.items.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      try {
        arr.items.push_back(read(element_type, depth));
      } catch (ParseFailure& f) {
        f.where = " array item " + std::to_string(i) + f.where;
        throw;
      }
    }
    return out;
  }

  Cursor& c_;
  uint64_t n_values_ = 0;
};

[[noreturn]] void rethrow_located(const std::string& file, const std::string& where,
                                  const ParseFailure& f) {
  if (f.truncated)
    throw LoadError(file + ": truncated while reading " + where + f.where + " (" + f.problem +
                    ")");
  throw LoadError(file + ": " + where + f.where + ": " + f.problem);
}

uint64_t align_up(uint64_t v, uint64_t alignment) {
  // Callers guarantee v < 2^63 (it is an offset inside a file), so this cannot overflow.
  return (v + alignment - 1) / alignment * alignment;
}

std::string tensor_label(const GgufTensorInfo& t) { return "tensor " + quoted(t.name); }

}  // namespace

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw LoadError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw LoadError(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw LoadError(path + ": not a regular file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    throw LoadError(path + ": empty file (not GGUF)");
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) throw LoadError(path + ": mmap failed: " + std::strerror(map_err));

  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = path;
  file->mapping_ = map;
  file->base_ = static_cast<const uint8_t*>(map);
  file->size_ = size;
  file->parse_all();  // on error the unique_ptr unmaps
  return file;
}

std::unique_ptr<GgufFile> GgufFile::parse(std::span<const uint8_t> bytes, std::string name) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = std::move(name);
  file->base_ = bytes.data();
  file->size_ = bytes.size();
  file->parse_all();
  return file;
}

GgufFile::~GgufFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata_[it->second].value;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

// The parse phases as free functions over a small state, so each stays short.
struct ParseState {
  const std::string& file;
  Cursor cursor;
  uint32_t version = 0;
  uint64_t n_tensors = 0;
  uint64_t n_kv = 0;
};

void parse_header(ParseState& s) {
  try {
    const uint32_t magic = s.cursor.read<uint32_t>();
    if (magic != kGgufMagic) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%08x", magic);
      fail(false, std::string("bad magic ") + hex + " (expected 0x46554747 \"GGUF\"); not a GGUF file");
    }
    s.version = s.cursor.read<uint32_t>();
    if (s.version == 1)
      fail(false, "GGUF version 1 (32-bit counts) is not supported; re-save as version 3");
    if (s.version != 2 && s.version != 3) {
      std::string hint = __builtin_bswap32(s.version) <= 3 ? " (a big-endian file?)" : "";
      fail(false, "unsupported GGUF version " + std::to_string(s.version) + hint +
                      "; versions 2 and 3 are supported");
    }
    s.n_tensors = s.cursor.read<uint64_t>();
    s.n_kv = s.cursor.read<uint64_t>();
    // Minimum encodings: tensor info = name len 8 + n_dims 4 + one dim 8 + type 4 + offset 8;
    // key/value = key len 8 + type 4 + one byte of value.
    if (s.n_tensors > s.cursor.remaining() / 32)
      fail(true, "header claims " + std::to_string(s.n_tensors) +
                     " tensors, more than the file can describe");
    if (s.n_kv > s.cursor.remaining() / 13)
      fail(true, "header claims " + std::to_string(s.n_kv) +
                     " metadata keys, more than the file can hold");
  } catch (const ParseFailure& f) {
    rethrow_located(s.file, "header", f);
  }
}

}  // namespace

namespace {

void parse_metadata(ParseState& s, std::vector<GgufKeyValue>& metadata,
                    std::unordered_map<std::string_view, size_t>& index) {
  Cursor& c = s.cursor;
  ValueParser values(c);
  metadata.reserve(s.n_kv);
  index.reserve(s.n_kv);
  for (uint64_t i = 0; i < s.n_kv; ++i) {
    std::string_view key;  // points into the image, so the index stays valid
    try {
      key = c.read_string();
      if (key.empty()) fail(false, "empty key");
      if (!gguf_is_valid_utf8(key)) fail(false, "key is not valid UTF-8");
      if (!index.emplace(key, i).second) fail(false, "duplicate key");
      const GgufValueType type = read_value_type(c, "value type");
      metadata.push_back(GgufKeyValue{std::string(key), values.read(type, 0)});
    } catch (const ParseFailure& f) {
      const std::string where = "metadata key #" + std::to_string(i) +
                                (key.data() != nullptr ? " (" + quoted(key) + ")" : " name");
      rethrow_located(s.file, where, f);
    }
  }
}

uint64_t checked_alignment(const std::string& file, const GgufValue* a) {
  if (a == nullptr) return kGgufDefaultAlignment;
  if (a->type != GgufValueType::UINT32)
    throw LoadError(file + ": general.alignment has type " +
                    std::string(gguf_value_type_name(a->type)) + ", expected UINT32");
  const uint64_t v = std::get<uint64_t>(a->value);
  if (v == 0 || !std::has_single_bit(v))
    throw LoadError(file + ": general.alignment " + std::to_string(v) +
                    " is not a non-zero power of two");
  return v;
}

GgufTensorInfo read_tensor_info(Cursor& c, std::string_view name) {
  if (name.empty()) fail(false, "empty tensor name");
  if (!gguf_is_valid_utf8(name)) fail(false, "tensor name is not valid UTF-8");
  GgufTensorInfo t;
  t.name = std::string(name);
  const uint32_t n_dims = c.read<uint32_t>();
  if (n_dims < 1 || n_dims > kGgufMaxDims)
    fail(false, "n_dims " + std::to_string(n_dims) + " (must be 1.." +
                    std::to_string(kGgufMaxDims) + ")");
  t.dims.resize(n_dims);
  for (uint32_t d = 0; d < n_dims; ++d) t.dims[d] = c.read<uint64_t>();
  const uint32_t type_id = c.read<uint32_t>();
  const auto info = ggml_type_info(type_id);
  if (!info) fail(false, "unknown ggml type id " + std::to_string(type_id));
  t.type = info->type;
  t.offset = c.read<uint64_t>();
  return t;
}

void parse_tensor_infos(ParseState& s, std::vector<GgufTensorInfo>& tensors,
                        std::unordered_map<std::string_view, size_t>& index) {
  tensors.reserve(s.n_tensors);
  index.reserve(s.n_tensors);
  for (uint64_t i = 0; i < s.n_tensors; ++i) {
    std::string_view name;
    try {
      name = s.cursor.read_string();
      if (!index.emplace(name, i).second) fail(false, "duplicate tensor name");
      tensors.push_back(read_tensor_info(s.cursor, name));
    } catch (const ParseFailure& f) {
      const std::string where = "tensor info #" + std::to_string(i) +
                                (name.data() != nullptr ? " (" + quoted(name) + ")" : " name");
      rethrow_located(s.file, where, f);
    }
  }
}

// Sizes the tensor (n_values, n_bytes) and checks block geometry, alignment and bounds.
void check_tensor(const std::string& file, GgufTensorInfo& t, uint64_t alignment,
                  uint64_t data_offset, uint64_t file_bytes) {
  const auto& info = ggml_type_info(t.type);
  const std::string label = file + ": " + tensor_label(t);
  uint64_t n_values = 1;
  for (size_t d = 0; d < t.dims.size(); ++d) {
    const uint64_t dim = t.dims[d];
    if (dim > static_cast<uint64_t>(INT64_MAX) ||
        (dim != 0 && n_values > static_cast<uint64_t>(INT64_MAX) / dim))
      throw LoadError(label + ": element count overflows (dim " + std::to_string(d) + " = " +
                      std::to_string(dim) + ")");
    n_values *= dim;
  }
  if (t.dims[0] % info.block_values != 0)
    throw LoadError(label + ": ne0 " + std::to_string(t.dims[0]) + " is not a multiple of the " +
                    std::string(info.name) + " block size " + std::to_string(info.block_values));
  t.n_values = n_values;
  const uint64_t n_blocks = n_values / info.block_values;
  if (n_blocks > UINT64_MAX / info.block_bytes)
    throw LoadError(label + ": byte size overflows");
  t.n_bytes = n_blocks * info.block_bytes;
  if (t.offset % alignment != 0)
    throw LoadError(label + ": offset " + std::to_string(t.offset) +
                    " is not a multiple of the alignment " + std::to_string(alignment));
  const uint64_t data_bytes = file_bytes - data_offset;
  if (t.offset > data_bytes || t.n_bytes > data_bytes - t.offset) {
    // Absolute file offset; a hostile relative offset may not fit when added, show it relative.
    const std::string where = t.offset <= UINT64_MAX - data_offset
                                  ? std::to_string(data_offset + t.offset)
                                  : "data+" + std::to_string(t.offset);
    throw LoadError(label + " data [offset " + where + ", " + std::to_string(t.n_bytes) +
                    " bytes] extends past end of file (size " + std::to_string(file_bytes) + ")");
  }
}

// Sorted by offset, every non-empty tensor must start at or after the furthest end so far.
void check_overlaps(const std::string& file, const std::vector<GgufTensorInfo>& tensors) {
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return tensors[a].offset < tensors[b].offset; });
  const GgufTensorInfo* furthest = nullptr;  // the non-empty tensor that ends last so far
  for (size_t k : order) {
    const auto& t = tensors[k];
    if (t.n_bytes == 0) continue;
    if (furthest != nullptr && t.offset < furthest->offset + furthest->n_bytes)
      throw LoadError(file + ": " + tensor_label(*furthest) + " [data offset " +
                      std::to_string(furthest->offset) + ", " +
                      std::to_string(furthest->n_bytes) + " bytes] overlaps " + tensor_label(t) +
                      " [data offset " + std::to_string(t.offset) + "]");
    if (furthest == nullptr || t.offset + t.n_bytes > furthest->offset + furthest->n_bytes)
      furthest = &t;
  }
}

}  // namespace

void GgufFile::parse_all() {
  ParseState s{path_, Cursor(base_, size_)};
  parse_header(s);
  version_ = s.version;
  parse_metadata(s, metadata_, key_index_);
  alignment_ = checked_alignment(path_, find("general.alignment"));
  parse_tensor_infos(s, tensors_, tensor_index_);

  data_offset_ = align_up(s.cursor.pos(), alignment_);
  if (!tensors_.empty() && data_offset_ > size_)
    throw LoadError(path_ + ": truncated: data section would start at offset " +
                    std::to_string(data_offset_) + " but the file has " + std::to_string(size_) +
                    " bytes");
  for (auto& t : tensors_) {
    check_tensor(path_, t, alignment_, data_offset_, size_);
    t.data = base_ + data_offset_ + t.offset;
  }
  check_overlaps(path_, tensors_);
}

}  // namespace ds4
