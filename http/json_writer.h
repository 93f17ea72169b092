// JsonWriter: appends compact JSON to a string for the HTTP responses and SSE chunks. Commas are
// inserted from a stack of open containers; strings go through engine/json_text's escaper (valid
// UTF-8 out, ill-formed bytes become U+FFFD); doubles print in shortest round-trip form, non-finite
// ones as null. Not a validator: callers pair begin/end and give a key before each object member.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ds4::http {

class JsonWriter {
 public:
  JsonWriter& begin_object();
  JsonWriter& end_object();
  JsonWriter& begin_array();
  JsonWriter& end_array();
  JsonWriter& key(std::string_view k);
  JsonWriter& string(std::string_view v);
  JsonWriter& number(int64_t v);
  JsonWriter& number(double v);
  JsonWriter& boolean(bool v);
  JsonWriter& null();
  JsonWriter& raw(std::string_view json);  // an already serialised value

  // key + value shorthands.
  JsonWriter& field(std::string_view k, std::string_view v) { return key(k).string(v); }
  JsonWriter& field(std::string_view k, const char* v) { return key(k).string(v); }
  JsonWriter& field(std::string_view k, int64_t v) { return key(k).number(v); }
  JsonWriter& field(std::string_view k, int v) { return key(k).number(static_cast<int64_t>(v)); }
  JsonWriter& field(std::string_view k, double v) { return key(k).number(v); }
  JsonWriter& field(std::string_view k, bool v) { return key(k).boolean(v); }
  // A string, or null when v is empty.
  JsonWriter& field_or_null(std::string_view k, std::string_view v) { return v.empty() ? key(k).null() : field(k, v); }

  const std::string& str() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void before_value();
  std::string out_;
  std::vector<bool> first_;  // per open container: no member written yet
  bool after_key_ = false;
};

}  // namespace ds4::http
