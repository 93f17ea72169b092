// A small JSON reader and writer for the chat layer: tool schemas and tool-call arguments that
// must be re-serialised exactly as DeepSeek's official encoder does (Python json.dumps with
// ensure_ascii=False: ", " and ": " separators) or compactly for OpenAI `arguments` strings.
// Object member order is kept; a repeated key keeps its first position and last value (as a
// Python dict does). Number literals are kept as text. Strict RFC 8259 input, UTF-8 only, depth
// limited. Used by engine/chat_template.cpp and engine/dsml.cpp; the HTTP layer has its own parser.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ds4 {

struct JsonValue {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  // User-provided so that clang with libstdc++ 12 (C++20) does not need the incomplete
  // pair<string, JsonValue> while checking that JsonValue is default-constructible.
  JsonValue() {}
  Kind kind = Kind::kNull;
  bool boolean = false;
  std::string text;  // kNumber: the literal as written; kString: the decoded UTF-8 value
  std::vector<JsonValue> items;                           // kArray
  std::vector<std::pair<std::string, JsonValue>> members;  // kObject, in order
};

inline constexpr int kJsonMaxDepth = 256;

// Parses one JSON value (surrounding whitespace allowed). On failure returns nullopt and, when
// error is given, a message naming the problem and its byte offset.
std::optional<JsonValue> parse_json(std::string_view text, std::string* error = nullptr);

enum class JsonStyle {
  kCompact,  // {"a":[1,2]} ; numbers as written
  kPython,   // {"a": [1, 2]} ; numbers as Python prints the parsed value (1E2 -> 100.0)
};
void write_json(const JsonValue& value, JsonStyle style, std::string& out);
std::string to_json(const JsonValue& value, JsonStyle style);

// Appends s as a quoted JSON string: escapes " \ and control characters (\n \r \t \b \f, else
// \u00XX), keeps other characters raw; ill-formed UTF-8 bytes become U+FFFD.
void append_json_string(std::string_view s, std::string& out);
// The escaped body only (no quotes), for streaming a string value in pieces.
void append_json_string_body(std::string_view s, std::string& out);

// Python repr() of the double a JSON number literal denotes (json.loads then json.dumps):
// integers keep their digits ("-0" -> "0"), others print the shortest round-trip form,
// e.g. "1.50" -> "1.5", "1E2" -> "100.0", "1e-7" -> "1e-07", "1e400" -> "Infinity".
std::string python_number_text(std::string_view literal);

}  // namespace ds4
