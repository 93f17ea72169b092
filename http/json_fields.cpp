// Typed simdjson DOM reads with OpenAI-style errors (see json_fields.h).
#include "http/json_fields.h"

#include <cmath>
#include <limits>

namespace ds4::http {

using simdjson::dom::element_type;

MaybeError parse_object(simdjson::dom::parser& parser, std::string_view body, simdjson::dom::object& out) {
  Element doc;
  const auto err = parser.parse(body.data(), body.size()).get(doc);
  if (err) return invalid_json(std::string("Invalid JSON body: ") + simdjson::error_message(err));
  if (doc.type() != element_type::OBJECT) return invalid_json("The request body must be a JSON object");
  out = doc.get_object().value_unsafe();
  return std::nullopt;
}

bool is_null(const Element& v) { return v.type() == element_type::NULL_VALUE; }

std::string_view json_type_name(const Element& v) {
  switch (v.type()) {
    case element_type::ARRAY: return "array";
    case element_type::OBJECT: return "object";
    case element_type::INT64:
    case element_type::UINT64: return "integer";
    case element_type::DOUBLE: return "number";
    case element_type::STRING: return "string";
    case element_type::BOOL: return "boolean";
    case element_type::NULL_VALUE: return "null";
  }
  return "value";
}

ApiError wrong_type(const std::string& param, std::string_view expected, const Element& v) {
  return invalid_param(param, "'" + param + "' must be " + std::string(expected) + ", got " +
                                  std::string(json_type_name(v)));
}

MaybeError read_string(const Element& v, const std::string& param, std::optional<std::string>& out) {
  if (is_null(v)) return std::nullopt;
  if (v.type() != element_type::STRING) return wrong_type(param, "a string", v);
  out = std::string(v.get_string().value_unsafe());
  return std::nullopt;
}

MaybeError read_bool(const Element& v, const std::string& param, std::optional<bool>& out) {
  if (is_null(v)) return std::nullopt;
  if (v.type() != element_type::BOOL) return wrong_type(param, "a boolean", v);
  out = v.get_bool().value_unsafe();
  return std::nullopt;
}

MaybeError read_int(const Element& v, const std::string& param, int64_t lo, int64_t hi, std::optional<int64_t>& out) {
  if (is_null(v)) return std::nullopt;
  int64_t value = 0;
  bool in_int64 = true;
  switch (v.type()) {
    case element_type::INT64: value = v.get_int64().value_unsafe(); break;
    case element_type::UINT64: in_int64 = false; break;
    case element_type::DOUBLE: {
      const double d = v.get_double().value_unsafe();
      if (d != std::floor(d)) return wrong_type(param, "an integer", v);
      if (std::fabs(d) >= 9.2e18) in_int64 = false;
      else value = static_cast<int64_t>(d);
      break;
    }
    default: return wrong_type(param, "an integer", v);
  }
  if (!in_int64 || value < lo || value > hi)
    return invalid_param(param, "'" + param + "' must be between " + std::to_string(lo) + " and " +
                                    std::to_string(hi) + ", got " + simdjson::to_string(v));
  out = value;
  return std::nullopt;
}

MaybeError read_number(const Element& v, const std::string& param, double lo, double hi, bool lo_open,
                       std::optional<double>& out) {
  if (is_null(v)) return std::nullopt;
  double value = 0;
  switch (v.type()) {
    case element_type::INT64: value = static_cast<double>(v.get_int64().value_unsafe()); break;
    case element_type::UINT64: value = static_cast<double>(v.get_uint64().value_unsafe()); break;
    case element_type::DOUBLE: value = v.get_double().value_unsafe(); break;
    default: return wrong_type(param, "a number", v);
  }
  const bool low_ok = lo_open ? value > lo : value >= lo;
  if (!low_ok || value > hi || std::isnan(value)) {
    auto fmt = [](double x) {
      std::string s = std::to_string(x);
      s.erase(s.find_last_not_of('0') + 1);
      if (!s.empty() && s.back() == '.') s.pop_back();
      return s;
    };
    return invalid_param(param, "'" + param + "' must be in " + (lo_open ? "(" : "[") + fmt(lo) + ", " + fmt(hi) +
                                    "], got " + simdjson::to_string(v));
  }
  out = value;
  return std::nullopt;
}

MaybeError read_token_ids(const Element& v, const std::string& param, std::vector<int32_t>& out) {
  if (v.type() != element_type::ARRAY) return wrong_type(param, "an array of token ids", v);
  out.clear();
  size_t i = 0;
  for (Element item : array_of(v)) {
    std::optional<int64_t> id;
    const std::string name = param + "[" + std::to_string(i++) + "]";
    if (is_null(item)) return wrong_type(name, "an integer", item);
    if (auto e = read_int(item, name, 0, std::numeric_limits<int32_t>::max(), id)) return e;
    out.push_back(static_cast<int32_t>(*id));
  }
  return std::nullopt;
}

MaybeError read_string_or_list(const Element& v, const std::string& param, std::vector<std::string>& out) {
  out.clear();
  if (is_null(v)) return std::nullopt;
  if (v.type() == element_type::STRING) {
    out.emplace_back(v.get_string().value_unsafe());
    return std::nullopt;
  }
  if (v.type() != element_type::ARRAY) return wrong_type(param, "a string or an array of strings", v);
  size_t i = 0;
  for (Element item : array_of(v)) {
    if (item.type() != element_type::STRING)
      return wrong_type(param + "[" + std::to_string(i) + "]", "a string", item);
    out.emplace_back(item.get_string().value_unsafe());
    ++i;
  }
  return std::nullopt;
}

}  // namespace ds4::http
