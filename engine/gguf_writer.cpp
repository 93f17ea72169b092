// GgufWriter: streams a GGUF v3 file (header in memory, tensor data straight through a buffer).
// Invariants: declarations are validated with the reader's rules, so every file it finishes is
// accepted by GgufFile; tensor offsets are aligned; an unfinished file is deleted by the
// destructor. Called by the synthetic-model generator, converters and tests.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <unordered_set>
#include <utility>

#include "engine/gguf.h"

namespace ds4 {
namespace {

constexpr size_t kBufferBytes = size_t{8} << 20;  // batches small appends into large writes
constexpr uint64_t kFixedHeaderBytes = 4 + 4 + 8 + 8;  // magic, version, n_tensors, n_kv
constexpr std::string_view kAlignmentKey = "general.alignment";

uint64_t align_up(uint64_t v, uint64_t alignment) {
  return (v + alignment - 1) / alignment * alignment;
}

bool is_unsigned_type(GgufValueType t) {
  return t == GgufValueType::UINT8 || t == GgufValueType::UINT16 || t == GgufValueType::UINT32 ||
         t == GgufValueType::UINT64;
}

bool is_signed_type(GgufValueType t) {
  return t == GgufValueType::INT8 || t == GgufValueType::INT16 || t == GgufValueType::INT32 ||
         t == GgufValueType::INT64;
}

uint64_t scalar_bytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::UINT8: case GgufValueType::INT8: case GgufValueType::BOOL: return 1;
    case GgufValueType::UINT16: case GgufValueType::INT16: return 2;
    case GgufValueType::UINT32: case GgufValueType::INT32: case GgufValueType::FLOAT32: return 4;
    case GgufValueType::UINT64: case GgufValueType::INT64: case GgufValueType::FLOAT64: return 8;
    default: return 0;
  }
}

// Checks that the value is encodable exactly as the reader will want it (variant alternative
// matches the type, in-range integers, array items of the element type, nesting depth) and
// returns its encoded size; counts values into *n_values.
uint64_t checked_value_bytes(const std::string& key, const GgufValue& v, int depth,
                             uint64_t* n_values) {
  const auto bad = [&](const std::string& why) {
    return LoadError("GgufWriter: metadata key '" + key + "': " + why);
  };
  ++*n_values;
  const std::string type_name(gguf_value_type_name(v.type));
  if (is_unsigned_type(v.type)) {
    const auto* u = std::get_if<uint64_t>(&v.value);
    if (u == nullptr) throw bad(type_name + " value does not hold an unsigned integer");
    const uint64_t bits = scalar_bytes(v.type) * 8;
    if (bits < 64 && *u >> bits != 0) throw bad(std::to_string(*u) + " out of range of " + type_name);
    return scalar_bytes(v.type);
  }
  if (is_signed_type(v.type)) {
    const auto* i = std::get_if<int64_t>(&v.value);
    if (i == nullptr) throw bad(type_name + " value does not hold a signed integer");
    const uint64_t bits = scalar_bytes(v.type) * 8;
    const int64_t lo = bits < 64 ? -(int64_t{1} << (bits - 1)) : INT64_MIN;
    const int64_t hi = bits < 64 ? (int64_t{1} << (bits - 1)) - 1 : INT64_MAX;
    if (*i < lo || *i > hi) throw bad(std::to_string(*i) + " out of range of " + type_name);
    return scalar_bytes(v.type);
  }
  switch (v.type) {
    case GgufValueType::FLOAT32:
    case GgufValueType::FLOAT64:
      if (!std::holds_alternative<double>(v.value)) throw bad(type_name + " value is not a double");
      return scalar_bytes(v.type);
    case GgufValueType::BOOL:
      if (!std::holds_alternative<bool>(v.value)) throw bad("BOOL value is not a bool");
      return 1;
    case GgufValueType::STRING:
      if (!std::holds_alternative<std::string>(v.value)) throw bad("STRING value is not a string");
      return 8 + std::get<std::string>(v.value).size();
    case GgufValueType::ARRAY: {
      const auto* arr = std::get_if<GgufArray>(&v.value);
      if (arr == nullptr) throw bad("ARRAY value is not an array");
      if (depth + 1 > kGgufMaxArrayDepth)
        throw bad("arrays nested deeper than " + std::to_string(kGgufMaxArrayDepth));
      if (static_cast<uint32_t>(arr->element_type) > static_cast<uint32_t>(GgufValueType::FLOAT64))
        throw bad("unknown array element type");
      uint64_t bytes = 4 + 8;
      for (size_t k = 0; k < arr->items.size(); ++k) {
        if (arr->items[k].type != arr->element_type)
          throw bad("array item " + std::to_string(k) + " has type " +
                    std::string(gguf_value_type_name(arr->items[k].type)) + ", expected " +
                    std::string(gguf_value_type_name(arr->element_type)));
        bytes += checked_value_bytes(key, arr->items[k], depth + 1, n_values);
      }
      return bytes;
    }
    default:
      throw bad("unknown value type " + std::to_string(static_cast<uint32_t>(v.type)));
  }
}

// Little-endian serialisation into a byte vector (the header is built in memory).
class ByteSink {
 public:
  std::vector<uint8_t>& bytes() { return bytes_; }
  template <class T>
  void put(T v) {
    const size_t at = bytes_.size();
    bytes_.resize(at + sizeof(T));
    std::memcpy(bytes_.data() + at, &v, sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
  }
  void put_value(const GgufValue& v) {
    switch (v.type) {
      case GgufValueType::UINT8: put<uint8_t>(std::get<uint64_t>(v.value)); break;
      case GgufValueType::UINT16: put<uint16_t>(std::get<uint64_t>(v.value)); break;
      case GgufValueType::UINT32: put<uint32_t>(std::get<uint64_t>(v.value)); break;
      case GgufValueType::UINT64: put<uint64_t>(std::get<uint64_t>(v.value)); break;
      case GgufValueType::INT8: put<int8_t>(std::get<int64_t>(v.value)); break;
      case GgufValueType::INT16: put<int16_t>(std::get<int64_t>(v.value)); break;
      case GgufValueType::INT32: put<int32_t>(std::get<int64_t>(v.value)); break;
      case GgufValueType::INT64: put<int64_t>(std::get<int64_t>(v.value)); break;
      case GgufValueType::FLOAT32: put<float>(static_cast<float>(std::get<double>(v.value))); break;
      case GgufValueType::FLOAT64: put<double>(std::get<double>(v.value)); break;
      case GgufValueType::BOOL: put<uint8_t>(std::get<bool>(v.value) ? 1 : 0); break;
      case GgufValueType::STRING: put_string(std::get<std::string>(v.value)); break;
      case GgufValueType::ARRAY: {
        const auto& arr = std::get<GgufArray>(v.value);
        put<uint32_t>(static_cast<uint32_t>(arr.element_type));
        put<uint64_t>(arr.items.size());
        for (const auto& item : arr.items) put_value(item);
        break;
      }
    }
  }

 private:
  std::vector<uint8_t> bytes_;
};

}  // namespace

struct GgufWriter::Impl {
  enum class State { kDeclaring, kWriting, kFinished, kFailed };
  std::string path;
  uint32_t alignment;
  GgufWriteMode mode;
  State state = State::kDeclaring;
  std::vector<GgufKeyValue> metadata;
  std::unordered_set<std::string> keys;
  std::unordered_set<std::string> tensor_names;
  uint64_t n_metadata_values = 0;
  uint64_t metadata_bytes = 0;     // encoded KV entries so far
  uint64_t tensor_info_bytes = 0;  // encoded tensor infos so far
  uint64_t data_bytes = 0;         // end of the last declared tensor, relative to the data start
  int fd = -1;
  bool created = false;            // we created `path` and must delete it unless finished
  std::vector<uint8_t> buffer;     // pending output, flushed at kBufferBytes
  uint64_t bytes_emitted = 0;      // bytes handed to emit() (file position once flushed)
  size_t current = 0;              // tensor whose data is being appended
  uint64_t current_written = 0;    // bytes of it appended so far

  bool needs_auto_alignment_key() const {
    return alignment != kGgufDefaultAlignment && !keys.contains(std::string(kAlignmentKey));
  }
  uint64_t header_bytes() const {
    const uint64_t auto_key = needs_auto_alignment_key() ? 8 + kAlignmentKey.size() + 4 + 4 : 0;
    return align_up(kFixedHeaderBytes + auto_key + metadata_bytes + tensor_info_bytes, alignment);
  }

  [[noreturn]] void io_failure(const char* what) {
    const int err = errno;
    state = State::kFailed;
    throw LoadError(path + ": " + what + ": " + std::strerror(err));
  }
  void write_all(const uint8_t* p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) io_failure("write failed");
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  void flush() {
    if (fd >= 0 && !buffer.empty()) write_all(buffer.data(), buffer.size());
    buffer.clear();
  }
  // Queues bytes for the file (counts only, in a dry run); large blocks bypass the buffer.
  void emit(const uint8_t* p, size_t n) {
    bytes_emitted += n;
    if (mode == GgufWriteMode::kDryRun) return;
    if (buffer.size() + n > kBufferBytes) flush();
    if (n >= kBufferBytes) {
      write_all(p, n);
    } else {
      buffer.insert(buffer.end(), p, p + n);
    }
  }
  void emit_zeros(uint64_t n) {
    static constexpr uint8_t kZeros[256] = {};
    while (n > 0) {
      const size_t k = static_cast<size_t>(std::min<uint64_t>(n, sizeof kZeros));
      emit(kZeros, k);
      n -= k;
    }
  }
};

GgufWriter::GgufWriter(std::string path, uint32_t alignment, GgufWriteMode mode)
    : impl_(std::make_unique<Impl>()) {
  if (alignment == 0 || !std::has_single_bit(alignment))
    throw LoadError("GgufWriter: alignment " + std::to_string(alignment) +
                    " is not a non-zero power of two");
  impl_->path = std::move(path);
  impl_->alignment = alignment;
  impl_->mode = mode;
}

GgufWriter::~GgufWriter() {
  if (impl_->fd >= 0) ::close(impl_->fd);
  if (impl_->created && impl_->state != Impl::State::kFinished) ::unlink(impl_->path.c_str());
}

void GgufWriter::add_metadata(std::string key, GgufValue value) {
  Impl& w = *impl_;
  if (w.state != Impl::State::kDeclaring)
    throw LoadError("GgufWriter: add_metadata('" + key + "') after write_header");
  if (key.empty() || !gguf_is_valid_utf8(key))
    throw LoadError("GgufWriter: metadata key '" + key + "' is empty or not valid UTF-8");
  if (w.keys.contains(key)) throw LoadError("GgufWriter: duplicate metadata key '" + key + "'");
  if (key == kAlignmentKey &&
      (value.type != GgufValueType::UINT32 ||
       std::get_if<uint64_t>(&value.value) == nullptr ||
       std::get<uint64_t>(value.value) != w.alignment))
    throw LoadError("GgufWriter: general.alignment must be the UINT32 " +
                    std::to_string(w.alignment) + " the writer was created with");
  uint64_t n_values = w.n_metadata_values;
  const uint64_t bytes = checked_value_bytes(key, value, 0, &n_values);
  if (n_values > kGgufMaxMetadataValues)
    throw LoadError("GgufWriter: more than " + std::to_string(kGgufMaxMetadataValues) +
                    " metadata values (at key '" + key + "')");
  w.n_metadata_values = n_values;
  w.metadata_bytes += 8 + key.size() + 4 + bytes;
  w.keys.insert(key);
  w.metadata.push_back(GgufKeyValue{std::move(key), std::move(value)});
}

void GgufWriter::add_tensor(std::string name, GgmlType type, std::vector<uint64_t> dims) {
  Impl& w = *impl_;
  const std::string label = "GgufWriter: tensor '" + name + "'";
  if (w.state != Impl::State::kDeclaring) throw LoadError(label + " added after write_header");
  if (name.empty() || !gguf_is_valid_utf8(name))
    throw LoadError(label + ": name is empty or not valid UTF-8");
  if (w.tensor_names.contains(name)) throw LoadError(label + ": duplicate tensor name");
  const auto info = ggml_type_info(static_cast<uint32_t>(type));
  if (!info)
    throw LoadError(label + ": unknown ggml type id " + std::to_string(static_cast<uint32_t>(type)));
  if (dims.empty() || dims.size() > kGgufMaxDims)
    throw LoadError(label + ": " + std::to_string(dims.size()) + " dims (must be 1..4)");
  uint64_t n_values = 1;
  for (uint64_t d : dims) {
    if (d > static_cast<uint64_t>(INT64_MAX) ||
        (d != 0 && n_values > static_cast<uint64_t>(INT64_MAX) / d))
      throw LoadError(label + ": element count overflows");
    n_values *= d;
  }
  if (dims[0] % info->block_values != 0)
    throw LoadError(label + ": ne0 " + std::to_string(dims[0]) + " is not a multiple of the " +
                    std::string(info->name) + " block size " + std::to_string(info->block_values));
  const uint64_t n_blocks = n_values / info->block_values;
  const uint64_t offset = align_up(w.data_bytes, w.alignment);
  if (n_blocks > (UINT64_MAX >> 2) / info->block_bytes ||
      n_blocks * info->block_bytes > (UINT64_MAX >> 2) - offset)
    throw LoadError(label + ": data size overflows");
  GgufTensorInfo t;
  t.name = std::move(name);
  t.dims = std::move(dims);
  t.type = type;
  t.offset = offset;
  t.n_values = n_values;
  t.n_bytes = n_blocks * info->block_bytes;
  w.data_bytes = t.offset + t.n_bytes;
  w.tensor_info_bytes += 8 + t.name.size() + 4 + 8 * t.dims.size() + 4 + 8;
  w.tensor_names.insert(t.name);
  tensors_.push_back(std::move(t));
}

uint64_t GgufWriter::header_bytes() const { return impl_->header_bytes(); }

uint64_t GgufWriter::total_bytes() const { return impl_->header_bytes() + impl_->data_bytes; }

void GgufWriter::write_header() {
  Impl& w = *impl_;
  if (w.state != Impl::State::kDeclaring)
    throw LoadError("GgufWriter: write_header called twice (or after a failure)");
  const bool auto_key = w.needs_auto_alignment_key();
  const uint64_t header = w.header_bytes();
  ByteSink sink;
  sink.bytes().reserve(static_cast<size_t>(header));
  sink.put<uint32_t>(kGgufMagic);
  sink.put<uint32_t>(3);
  sink.put<uint64_t>(tensors_.size());
  sink.put<uint64_t>(w.metadata.size() + (auto_key ? 1 : 0));
  if (auto_key) {
    sink.put_string(kAlignmentKey);
    sink.put<uint32_t>(static_cast<uint32_t>(GgufValueType::UINT32));
    sink.put<uint32_t>(w.alignment);
  }
  for (const auto& kv : w.metadata) {
    sink.put_string(kv.key);
    sink.put<uint32_t>(static_cast<uint32_t>(kv.value.type));
    sink.put_value(kv.value);
  }
  for (const auto& t : tensors_) {
    sink.put_string(t.name);
    sink.put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) sink.put<uint64_t>(d);
    sink.put<uint32_t>(static_cast<uint32_t>(t.type));
    sink.put<uint64_t>(t.offset);
  }
  sink.bytes().resize(static_cast<size_t>(header), 0);  // zero padding up to the data section

  if (w.mode == GgufWriteMode::kWrite) {
    w.fd = ::open(w.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w.fd < 0) w.io_failure("cannot create");
    w.created = true;
    w.buffer.reserve(kBufferBytes);
  }
  w.state = Impl::State::kWriting;
  w.emit(sink.bytes().data(), sink.bytes().size());
  skip_empty_tensors();
}

// Moves `current` past zero-byte tensors and pads with zeros to where the next tensor that needs
// data starts, or to the end of the file (only trailing empty tensors can need that padding).
void GgufWriter::skip_empty_tensors() {
  Impl& w = *impl_;
  while (w.current < tensors_.size() && tensors_[w.current].n_bytes == 0) ++w.current;
  const uint64_t target = w.current < tensors_.size()
                              ? w.header_bytes() + tensors_[w.current].offset
                              : total_bytes();
  w.emit_zeros(target - w.bytes_emitted);
}

void GgufWriter::append_tensor_data(std::span<const uint8_t> bytes) {
  Impl& w = *impl_;
  if (w.state != Impl::State::kWriting)
    throw LoadError(w.state == Impl::State::kDeclaring
                        ? "GgufWriter: append_tensor_data before write_header"
                        : "GgufWriter: append_tensor_data after finish or a failure");
  if (bytes.empty()) return;
  if (w.current >= tensors_.size())
    throw LoadError("GgufWriter: " + std::to_string(bytes.size()) +
                    " bytes appended after all tensor data was written");
  const GgufTensorInfo& t = tensors_[w.current];
  const uint64_t left = t.n_bytes - w.current_written;
  if (bytes.size() > left)
    throw LoadError("GgufWriter: append of " + std::to_string(bytes.size()) +
                    " bytes exceeds tensor '" + t.name + "' (" + std::to_string(left) + " of " +
                    std::to_string(t.n_bytes) + " bytes left)");
  w.emit(bytes.data(), bytes.size());
  w.current_written += bytes.size();
  if (w.current_written < t.n_bytes) return;
  // Tensor complete: pad to the next tensor's offset (no padding after the last).
  w.current_written = 0;
  ++w.current;
  skip_empty_tensors();
}

void GgufWriter::finish() {
  Impl& w = *impl_;
  if (w.state != Impl::State::kWriting)
    throw LoadError(w.state == Impl::State::kDeclaring
                        ? "GgufWriter: finish before write_header"
                        : "GgufWriter: finish called twice (or after a failure)");
  if (w.current < tensors_.size()) {
    const GgufTensorInfo& t = tensors_[w.current];
    throw LoadError("GgufWriter: finish with tensor '" + t.name + "' incomplete (" +
                    std::to_string(w.current_written) + " of " + std::to_string(t.n_bytes) +
                    " bytes written, " + std::to_string(tensors_.size() - w.current - 1) +
                    " more tensors after it)");
  }
  if (w.bytes_emitted != total_bytes())
    throw LoadError("GgufWriter: internal size mismatch: wrote " + std::to_string(w.bytes_emitted) +
                    " bytes, expected " + std::to_string(total_bytes()));
  w.flush();
  if (w.fd >= 0) {
    const int fd = w.fd;
    w.fd = -1;
    if (::close(fd) != 0) w.io_failure("close failed");
  }
  w.state = Impl::State::kFinished;
}

}  // namespace ds4
