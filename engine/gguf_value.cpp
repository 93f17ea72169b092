// GgufValue: constructors, kind predicates and checked accessors of one GGUF metadata value.
// Invariant: unsigned integer types store uint64_t, signed ones int64_t, FLOAT32/FLOAT64 double,
// BOOL bool, STRING std::string, ARRAY GgufArray whose items all have the element type.
// Called by the GGUF reader/writer and by everything that reads model metadata (ModelConfig,
// tokenizer); accessors throw LoadError naming the key and the expected vs found kind.
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "engine/gguf.h"

namespace ds4 {
namespace {

GgufValue make(GgufValueType type, auto v) {
  GgufValue out;
  out.type = type;
  out.value = std::move(v);
  return out;
}

// "ARRAY of STRING" for arrays, the plain type name otherwise: used in error messages.
std::string found_kind(const GgufValue& v) {
  std::string s(gguf_value_type_name(v.type));
  if (v.type == GgufValueType::ARRAY)
    if (const auto* arr = std::get_if<GgufArray>(&v.value))
      s += " of " + std::string(gguf_value_type_name(arr->element_type));
  return s;
}

[[noreturn]] void wrong_kind(std::string_view what, std::string_view expected,
                             const GgufValue& v) {
  throw LoadError(std::string(what) + ": expected " + std::string(expected) + ", found " +
                  found_kind(v));
}

bool is_unsigned_type(GgufValueType t) {
  return t == GgufValueType::UINT8 || t == GgufValueType::UINT16 || t == GgufValueType::UINT32 ||
         t == GgufValueType::UINT64;
}

bool is_signed_type(GgufValueType t) {
  return t == GgufValueType::INT8 || t == GgufValueType::INT16 || t == GgufValueType::INT32 ||
         t == GgufValueType::INT64;
}

}  // namespace

std::string_view gguf_value_type_name(GgufValueType type) {
  switch (type) {
    case GgufValueType::UINT8: return "UINT8";
    case GgufValueType::INT8: return "INT8";
    case GgufValueType::UINT16: return "UINT16";
    case GgufValueType::INT16: return "INT16";
    case GgufValueType::UINT32: return "UINT32";
    case GgufValueType::INT32: return "INT32";
    case GgufValueType::FLOAT32: return "FLOAT32";
    case GgufValueType::BOOL: return "BOOL";
    case GgufValueType::STRING: return "STRING";
    case GgufValueType::ARRAY: return "ARRAY";
    case GgufValueType::UINT64: return "UINT64";
    case GgufValueType::INT64: return "INT64";
    case GgufValueType::FLOAT64: return "FLOAT64";
  }
  return "UNKNOWN";
}

GgufValue GgufValue::u8(uint8_t v) { return make(GgufValueType::UINT8, uint64_t{v}); }
GgufValue GgufValue::i8(int8_t v) { return make(GgufValueType::INT8, int64_t{v}); }
GgufValue GgufValue::u16(uint16_t v) { return make(GgufValueType::UINT16, uint64_t{v}); }
GgufValue GgufValue::i16(int16_t v) { return make(GgufValueType::INT16, int64_t{v}); }
GgufValue GgufValue::u32(uint32_t v) { return make(GgufValueType::UINT32, uint64_t{v}); }
GgufValue GgufValue::i32(int32_t v) { return make(GgufValueType::INT32, int64_t{v}); }
GgufValue GgufValue::u64(uint64_t v) { return make(GgufValueType::UINT64, v); }
GgufValue GgufValue::i64(int64_t v) { return make(GgufValueType::INT64, v); }
// float -> double is exact, so a FLOAT32 value round-trips bit for bit (NaN payloads aside).
GgufValue GgufValue::f32(float v) { return make(GgufValueType::FLOAT32, double{v}); }
GgufValue GgufValue::f64(double v) { return make(GgufValueType::FLOAT64, v); }
GgufValue GgufValue::boolean(bool v) { return make(GgufValueType::BOOL, v); }
GgufValue GgufValue::string(std::string v) { return make(GgufValueType::STRING, std::move(v)); }

GgufValue GgufValue::array(GgufValueType element_type, std::vector<GgufValue> items) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].type != element_type)
      throw LoadError("GGUF array of " + std::string(gguf_value_type_name(element_type)) +
                      ": item " + std::to_string(i) + " has type " + found_kind(items[i]));
  }
  return make(GgufValueType::ARRAY, GgufArray{element_type, std::move(items)});
}

GgufValue GgufValue::string_array(const std::vector<std::string>& items) {
  std::vector<GgufValue> values;
  values.reserve(items.size());
  for (const auto& s : items) values.push_back(string(s));
  return make(GgufValueType::ARRAY, GgufArray{GgufValueType::STRING, std::move(values)});
}

bool GgufValue::is_integer() const { return is_unsigned_type(type) || is_signed_type(type); }

bool GgufValue::is_float() const {
  return type == GgufValueType::FLOAT32 || type == GgufValueType::FLOAT64;
}

int64_t GgufValue::as_int(std::string_view what) const {
  if (is_signed_type(type)) return std::get<int64_t>(value);
  if (is_unsigned_type(type)) {
    const uint64_t v = std::get<uint64_t>(value);
    if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw LoadError(std::string(what) + ": value " + std::to_string(v) +
                      " does not fit in a signed 64-bit integer");
    return static_cast<int64_t>(v);
  }
  wrong_kind(what, "an integer", *this);
}

uint64_t GgufValue::as_uint(std::string_view what) const {
  if (is_unsigned_type(type)) return std::get<uint64_t>(value);
  if (is_signed_type(type)) {
    const int64_t v = std::get<int64_t>(value);
    if (v < 0)
      throw LoadError(std::string(what) + ": expected a non-negative integer, found " +
                      std::to_string(v));
    return static_cast<uint64_t>(v);
  }
  wrong_kind(what, "an unsigned integer", *this);
}

double GgufValue::as_double(std::string_view what) const {
  if (is_float()) return std::get<double>(value);
  if (is_unsigned_type(type)) return static_cast<double>(std::get<uint64_t>(value));
  if (is_signed_type(type)) return static_cast<double>(std::get<int64_t>(value));
  wrong_kind(what, "a number", *this);
}

bool GgufValue::as_bool(std::string_view what) const {
  if (type == GgufValueType::BOOL) return std::get<bool>(value);
  wrong_kind(what, "BOOL", *this);
}

const std::string& GgufValue::as_string(std::string_view what) const {
  if (type == GgufValueType::STRING) return std::get<std::string>(value);
  wrong_kind(what, "STRING", *this);
}

const GgufArray& GgufValue::as_array(std::string_view what) const {
  if (type == GgufValueType::ARRAY) return std::get<GgufArray>(value);
  wrong_kind(what, "ARRAY", *this);
}

}  // namespace ds4
