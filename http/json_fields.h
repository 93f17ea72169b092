// Typed reads of simdjson DOM values for request parsing: each returns an ApiError naming the
// parameter when the value has the wrong type or range, and treats JSON null as "not given" (the
// `given` flag / optional stays unset). Internal to http/ (openai_request*.cpp).
#pragma once
#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/api_error.h"

namespace ds4::http {

using Element = simdjson::dom::element;
using MaybeError = std::optional<ApiError>;

// Parses body into `doc` (the parser owns the storage). Error when not JSON or not an object.
MaybeError parse_object(simdjson::dom::parser& parser, std::string_view body, simdjson::dom::object& out);

std::string_view json_type_name(const Element& v);
// "expected T, got U" style error for param.
ApiError wrong_type(const std::string& param, std::string_view expected, const Element& v);

MaybeError read_string(const Element& v, const std::string& param, std::optional<std::string>& out);
MaybeError read_bool(const Element& v, const std::string& param, std::optional<bool>& out);
// Integers (an integral floating value such as 5.0 is accepted), within [lo, hi].
MaybeError read_int(const Element& v, const std::string& param, int64_t lo, int64_t hi, std::optional<int64_t>& out);
// Any number within [lo, hi] (open bounds when the flags say so).
MaybeError read_number(const Element& v, const std::string& param, double lo, double hi, bool lo_open,
                       std::optional<double>& out);
// A list of token ids (non-negative int32).
MaybeError read_token_ids(const Element& v, const std::string& param, std::vector<int32_t>& out);
// A string or a list of strings.
MaybeError read_string_or_list(const Element& v, const std::string& param, std::vector<std::string>& out);

bool is_null(const Element& v);

// The array / object of v by value (empty when v is not one), so that range-for does not iterate
// over a member of a destroyed temporary simdjson_result.
inline simdjson::dom::array array_of(const Element& v) {
  simdjson::dom::array a;
  const auto error = v.get_array().get(a);  // callers check the type first
  (void)error;
  return a;
}
inline simdjson::dom::object object_of(const Element& v) {
  simdjson::dom::object o;
  const auto error = v.get_object().get(o);
  (void)error;
  return o;
}

}  // namespace ds4::http
