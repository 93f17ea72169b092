// Minimal JSON text output for ds4serve-load: string escaping and number formatting.
// Numbers are written locale-free; NaN and infinities (not JSON) become null.
// Used by the request bodies (workload.cpp) and the JSON report (report.cpp).
#pragma once

#include <string>
#include <string_view>

namespace ds4::loadtest {

// Appends s as a quoted JSON string (control characters as \u00XX; UTF-8 passes through).
void append_json_string(std::string* out, std::string_view s);
std::string json_string(std::string_view s);
// Shortest round-trip text of v, or "null" when v is not finite.
std::string json_number(double v);

}  // namespace ds4::loadtest
