// safetensors reader (see safetensors.h): mmap + simdjson header parse + bounds checks.
#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <simdjson.h>

#include "engine/load_error.h"
#include "kernels/f16.h"

namespace ds4 {
namespace {

uint64_t dtype_bytes(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64") return 8;
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16") return 2;
  if (dtype == "I8" || dtype == "U8" || dtype == "BOOL") return 1;
  return 0;
}

SafetensorsTensor parse_entry(const std::string& name, simdjson::ondemand::object entry, const uint8_t* data_start,
                              uint64_t data_bytes, const std::string& path) {
  SafetensorsTensor t;
  t.dtype = std::string(std::string_view(entry["dtype"].get_string()));
  for (auto dim : entry["shape"].get_array()) t.shape.push_back(uint64_t(dim.get_uint64()));
  std::vector<uint64_t> offs;
  for (auto o : entry["data_offsets"].get_array()) offs.push_back(uint64_t(o.get_uint64()));
  const uint64_t elem = dtype_bytes(t.dtype);
  if (!elem) throw LoadError(path + ": tensor '" + name + "' has unsupported dtype " + t.dtype);
  if (offs.size() != 2 || offs[0] > offs[1] || offs[1] > data_bytes)
    throw LoadError(path + ": tensor '" + name + "' data_offsets outside the file");
  uint64_t n = 1;
  for (uint64_t d : t.shape) {
    if (d && n > UINT64_MAX / d / elem) throw LoadError(path + ": tensor '" + name + "' shape overflows");
    n *= d;
  }
  if (n * elem != offs[1] - offs[0])
    throw LoadError(path + ": tensor '" + name + "': shape needs " + std::to_string(n * elem) + " bytes, data_offsets give " +
                    std::to_string(offs[1] - offs[0]));
  t.data = data_start + offs[0];
  t.n_bytes = offs[1] - offs[0];
  return t;
}

}  // namespace

uint64_t SafetensorsTensor::n_values() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

std::vector<float> SafetensorsTensor::to_f32(const std::string& name) const {
  const uint64_t n = n_values();
  std::vector<float> out(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (dtype == "F32") std::memcpy(&out[i], data + 4 * i, 4);
    else if (dtype == "F16" || dtype == "BF16") {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      out[i] = dtype == "F16" ? f16_to_f32(h) : bf16_to_f32(h);
    } else if (dtype == "F64") {
      double d;
      std::memcpy(&d, data + 8 * i, 8);
      out[i] = static_cast<float>(d);
    } else {
      throw LoadError("tensor '" + name + "' has dtype " + dtype + ", expected a floating type");
    }
  }
  return out;
}

std::vector<int64_t> SafetensorsTensor::to_i64(const std::string& name) const {
  const uint64_t n = n_values();
  std::vector<int64_t> out(n);
  for (uint64_t i = 0; i < n; ++i) {
    if (dtype == "I64") std::memcpy(&out[i], data + 8 * i, 8);
    else if (dtype == "I32") {
      int32_t v;
      std::memcpy(&v, data + 4 * i, 4);
      out[i] = v;
    } else {
      throw LoadError("tensor '" + name + "' has dtype " + dtype + ", expected an integer type");
    }
  }
  return out;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto f = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  f->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw LoadError("cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_size < 8) {
    ::close(fd);
    throw LoadError(path + ": not a safetensors file (too short)");
  }
  f->size_ = static_cast<uint64_t>(st.st_size);
  f->mapping_ = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (f->mapping_ == MAP_FAILED) {
    f->mapping_ = nullptr;
    throw LoadError("cannot map " + path);
  }
  const auto* base = static_cast<const uint8_t*>(f->mapping_);
  uint64_t header_len;
  std::memcpy(&header_len, base, 8);
  if (header_len > f->size_ - 8) throw LoadError(path + ": header length " + std::to_string(header_len) + " exceeds the file");
  simdjson::ondemand::parser parser;
  simdjson::padded_string header(reinterpret_cast<const char*>(base + 8), header_len);
  try {
    auto doc = parser.iterate(header);
    for (auto field : doc.get_object()) {
      const std::string name(std::string_view(field.unescaped_key()));
      if (name == "__metadata__") continue;
      f->tensors_[name] = parse_entry(name, field.value().get_object(), base + 8 + header_len, f->size_ - 8 - header_len, path);
    }
  } catch (const simdjson::simdjson_error& e) {
    throw LoadError(path + ": bad safetensors header JSON: " + e.what());
  }
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_) munmap(mapping_, size_);
}

const SafetensorsTensor& SafetensorsFile::at(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) throw LoadError(path_ + ": missing tensor '" + name + "'");
  return it->second;
}

}  // namespace ds4
