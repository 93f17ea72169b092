// Read-only safetensors files (HF checkpoints): 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}}, then the raw data. Used by the HF converter. Every offset
// and shape is checked against the file; problems throw LoadError naming the tensor.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ds4 {

struct SafetensorsTensor {
  std::string dtype;            // "F32", "F16", "BF16", "I64", "I32", ...
  std::vector<uint64_t> shape;  // row-major, last dimension contiguous
  const uint8_t* data = nullptr;
  uint64_t n_bytes = 0;
  uint64_t n_values() const;
  // Values converted to f32 (floating dtypes only) / i64 (integer dtypes only).
  std::vector<float> to_f32(const std::string& name) const;
  std::vector<int64_t> to_i64(const std::string& name) const;
};

class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  const std::map<std::string, SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor& at(const std::string& name) const;  // throws LoadError when missing

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* mapping_ = nullptr;
  uint64_t size_ = 0;
  std::map<std::string, SafetensorsTensor> tensors_;
};

}  // namespace ds4
