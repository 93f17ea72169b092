// JSON reader (recursive descent, depth-limited) and the two writers.
#include "engine/json_text.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "engine/unicode_class.h"

namespace ds4 {
namespace {

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}

  std::optional<JsonValue> parse_document(std::string* error) {
    skip_ws();
    JsonValue v;
    if (!parse_value(v, 0)) return report(error);
    skip_ws();
    if (pos_ != s_.size()) {
      fail("unexpected text after the JSON value");
      return report(error);
    }
    return v;
  }

 private:
  std::optional<JsonValue> report(std::string* error) const {
    if (error) *error = error_ + " at byte " + std::to_string(error_pos_);
    return std::nullopt;
  }
  bool fail(const char* what) {
    if (error_.empty()) { error_ = what; error_pos_ = pos_; }
    return false;
  }
  void skip_ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return fail("invalid literal");
    pos_ += word.size();
    return true;
  }

  bool parse_value(JsonValue& v, int depth) {
    if (depth > kJsonMaxDepth) return fail("JSON nested too deeply");
    if (pos_ >= s_.size()) return fail("unexpected end of JSON");
    switch (s_[pos_]) {
      case '{': return parse_object(v, depth);
      case '[': return parse_array(v, depth);
      case '"': v.kind = JsonValue::Kind::kString; return parse_string(v.text);
      case 't': v.kind = JsonValue::Kind::kBool; v.boolean = true; return literal("true");
      case 'f': v.kind = JsonValue::Kind::kBool; v.boolean = false; return literal("false");
      case 'n': v.kind = JsonValue::Kind::kNull; return literal("null");
      default: v.kind = JsonValue::Kind::kNumber; return parse_number(v.text);
    }
  }

  bool parse_object(JsonValue& v, int depth) {
    v.kind = JsonValue::Kind::kObject;
    ++pos_;
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') { ++pos_; return true; }
    for (;;) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') return fail("expected an object key");
      std::string key;
      if (!parse_string(key)) return false;
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') return fail("expected ':'");
      ++pos_;
      skip_ws();
      JsonValue member;
      if (!parse_value(member, depth + 1)) return false;
      bool replaced = false;
      for (auto& [k, existing] : v.members)
        if (k == key) { existing = std::move(member); replaced = true; break; }
      if (!replaced) v.members.emplace_back(std::move(key), std::move(member));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') { ++pos_; continue; }
      if (pos_ < s_.size() && s_[pos_] == '}') { ++pos_; return true; }
      return fail("expected ',' or '}'");
    }
  }

  bool parse_array(JsonValue& v, int depth) {
    v.kind = JsonValue::Kind::kArray;
    ++pos_;
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') { ++pos_; return true; }
    for (;;) {
      skip_ws();
      v.items.emplace_back();
      if (!parse_value(v.items.back(), depth + 1)) return false;
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') { ++pos_; continue; }
      if (pos_ < s_.size() && s_[pos_] == ']') { ++pos_; return true; }
      return fail("expected ',' or ']'");
    }
  }

  bool parse_number(std::string& out) {
    const size_t start = pos_;
    auto digits = [&] {
      const size_t d = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - d;
    };
    if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0') ++pos_;
    else if (digits() == 0) return fail("invalid number");
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (digits() == 0) return fail("invalid number");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (digits() == 0) return fail("invalid number");
    }
    out.assign(s_.substr(start, pos_ - start));
    return true;
  }

  bool parse_hex4(char32_t& cp) {
    if (pos_ + 4 > s_.size()) return fail("truncated \\u escape");
    cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      cp <<= 4;
      if (c >= '0' && c <= '9') cp |= c - '0';
      else if (c >= 'a' && c <= 'f') cp |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') cp |= c - 'A' + 10;
      else return fail("invalid \\u escape");
    }
    return true;
  }

  bool parse_escape(std::string& out) {
    if (pos_ >= s_.size()) return fail("unterminated string");
    const char c = s_[pos_++];
    switch (c) {
      case '"': out.push_back('"'); return true;
      case '\\': out.push_back('\\'); return true;
      case '/': out.push_back('/'); return true;
      case 'b': out.push_back('\b'); return true;
      case 'f': out.push_back('\f'); return true;
      case 'n': out.push_back('\n'); return true;
      case 'r': out.push_back('\r'); return true;
      case 't': out.push_back('\t'); return true;
      case 'u': break;
      default: --pos_; return fail("invalid escape");
    }
    char32_t cp = 0;
    if (!parse_hex4(cp)) return false;
    if (cp >= 0xD800 && cp <= 0xDBFF && s_.substr(pos_, 2) == "\\u") {
      const size_t save = pos_;
      pos_ += 2;
      char32_t low = 0;
      if (!parse_hex4(low)) return false;
      if (low >= 0xDC00 && low <= 0xDFFF) cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
      else pos_ = save;
    }
    // A lone surrogate cannot be UTF-8: U+FFFD stands in for it.
    append_utf8(cp >= 0xD800 && cp <= 0xDFFF ? 0xFFFD : cp, out);
    return true;
  }

  bool parse_string(std::string& out) {
    ++pos_;  // opening quote
    for (;;) {
      if (pos_ >= s_.size()) return fail("unterminated string");
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') { ++pos_; return true; }
      if (c == '\\') { ++pos_; if (!parse_escape(out)) return false; continue; }
      if (c < 0x20) return fail("control character in string");
      const unicode::Utf8Unit u = unicode::decode_utf8(s_.data() + pos_, s_.size() - pos_);
      if (!u.valid) return fail("invalid UTF-8 in string");
      out.append(s_.substr(pos_, u.length));
      pos_ += u.length;
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
  size_t error_pos_ = 0;
};

void write_value(const JsonValue& v, JsonStyle style, std::string& out) {
  const bool py = style == JsonStyle::kPython;
  switch (v.kind) {
    case JsonValue::Kind::kNull: out += "null"; return;
    case JsonValue::Kind::kBool: out += v.boolean ? "true" : "false"; return;
    case JsonValue::Kind::kNumber: out += py ? python_number_text(v.text) : v.text; return;
    case JsonValue::Kind::kString: append_json_string(v.text, out); return;
    case JsonValue::Kind::kArray:
      out.push_back('[');
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += py ? ", " : ",";
        write_value(v.items[i], style, out);
      }
      out.push_back(']');
      return;
    case JsonValue::Kind::kObject:
      out.push_back('{');
      for (size_t i = 0; i < v.members.size(); ++i) {
        if (i) out += py ? ", " : ",";
        append_json_string(v.members[i].first, out);
        out += py ? ": " : ":";
        write_value(v.members[i].second, style, out);
      }
      out.push_back('}');
      return;
  }
}

}  // namespace

std::optional<JsonValue> parse_json(std::string_view text, std::string* error) {
  return Reader(text).parse_document(error);
}

void write_json(const JsonValue& value, JsonStyle style, std::string& out) { write_value(value, style, out); }

std::string to_json(const JsonValue& value, JsonStyle style) {
  std::string out;
  write_value(value, style, out);
  return out;
}

void append_json_string_body(std::string_view s, std::string& out) {
  static const char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const unicode::Utf8Unit u = unicode::decode_utf8(s.data() + i, s.size() - i);
      if (u.valid) out.append(s.substr(i, u.length));
      else out += "\xEF\xBF\xBD";  // U+FFFD
      i += u.length;
      continue;
    }
    ++i;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
}

void append_json_string(std::string_view s, std::string& out) {
  out.push_back('"');
  append_json_string_body(s, out);
  out.push_back('"');
}

std::string python_number_text(std::string_view literal) {
  const bool is_float = literal.find_first_of(".eE") != std::string_view::npos;
  if (!is_float) return literal == "-0" ? "0" : std::string(literal);
  const double value = std::strtod(std::string(literal).c_str(), nullptr);
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  // Shortest round-trip digits and decimal exponent, then Python's repr layout: positional for
  // exponents in [-4, 16), scientific with a signed two-digit-minimum exponent otherwise.
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  const size_t e = sci.find('e');
  std::string mantissa = sci.substr(0, e);
  const int exponent = std::atoi(sci.c_str() + e + 1);
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa)
    if (c != '.') digits.push_back(c);
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    } else {
      const auto int_len = static_cast<size_t>(exponent) + 1;
      if (digits.size() <= int_len) {
        out += digits + std::string(int_len - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, int_len) + "." + digits.substr(int_len);
      }
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exp_buf;
}

}  // namespace ds4
