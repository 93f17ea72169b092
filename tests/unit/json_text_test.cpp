// JSON reader/writer: strict parsing with clear errors, order-preserving objects, compact and
// Python json.dumps output (expected strings are Python's outputs for the same input).
#include "engine/json_text.h"

#include <gtest/gtest.h>

namespace ds4 {
namespace {

std::string python(std::string_view text) {
  const auto v = parse_json(text);
  EXPECT_TRUE(v.has_value()) << text;
  return v ? to_json(*v, JsonStyle::kPython) : "";
}

std::string compact(std::string_view text) {
  const auto v = parse_json(text);
  EXPECT_TRUE(v.has_value()) << text;
  return v ? to_json(*v, JsonStyle::kCompact) : "";
}

std::string error_of(std::string_view text) {
  std::string error;
  EXPECT_FALSE(parse_json(text, &error).has_value()) << text;
  return error;
}

TEST(JsonText, PythonDumpsLayout) {
  EXPECT_EQ(python(R"({"b":1,"a":[true,false,null,"x"],"c":{}})"),
            R"({"b": 1, "a": [true, false, null, "x"], "c": {}})");
  EXPECT_EQ(python(" [ ] "), "[]");
  EXPECT_EQ(python(R"({"k":"line\nquote\"back\\slash\/ tab\t \u00e9 \ud83d\ude00 \u0001"})"),
            "{\"k\": \"line\\nquote\\\"back\\\\slash/ tab\\t \xC3\xA9 \xF0\x9F\x98\x80 \\u0001\"}");
  EXPECT_EQ(python(R"({"a":1,"b":2,"a":3})"), R"({"a": 3, "b": 2})");  // dict semantics
}

TEST(JsonText, PythonNumbers) {
  const std::pair<const char*, const char*> cases[] = {
      {"-0", "0"}, {"1.50", "1.5"}, {"1E2", "100.0"}, {"1e-7", "1e-07"}, {"1e400", "Infinity"},
      {"-1e400", "-Infinity"}, {"0.1", "0.1"}, {"123456789012345678901234567890", "123456789012345678901234567890"},
      {"1e16", "1e+16"}, {"1.5e16", "1.5e+16"}, {"1e15", "1000000000000000.0"}, {"0.0001", "0.0001"},
      {"0.00001", "1e-05"}, {"-0.0", "-0.0"}, {"2.5e-3", "0.0025"}, {"1e5", "100000.0"}, {"3.0e0", "3.0"},
      {"12345678.9", "12345678.9"}, {"1.7976931348623157e308", "1.7976931348623157e+308"}, {"5e-324", "5e-324"},
  };
  for (const auto& [literal, expected] : cases) EXPECT_EQ(python_number_text(literal), expected) << literal;
  EXPECT_EQ(compact("[1.50, 1E2, -0]"), "[1.50,1E2,-0]");  // compact keeps literals as written
}

TEST(JsonText, CompactLayout) {
  EXPECT_EQ(compact(" { \"a\" : [ 1 , { \"b\" : \"\xE4\xB8\xAD\" } ] } "), "{\"a\":[1,{\"b\":\"\xE4\xB8\xAD\"}]}");
  std::string s;
  append_json_string("bad\xFF utf8 \x1F", s);
  EXPECT_EQ(s, "\"bad\xEF\xBF\xBD utf8 \\u001f\"");
}

TEST(JsonText, ErrorsNameTheProblemAndOffset) {
  EXPECT_NE(error_of("").find("unexpected end"), std::string::npos);
  EXPECT_NE(error_of("{\"a\":1,}").find("expected an object key"), std::string::npos);
  EXPECT_NE(error_of("[1 2]").find("expected ',' or ']'"), std::string::npos);
  EXPECT_NE(error_of("01").find("unexpected text"), std::string::npos);
  EXPECT_NE(error_of("1.").find("invalid number"), std::string::npos);
  EXPECT_NE(error_of("\"a\nb\"").find("control character"), std::string::npos);
  EXPECT_NE(error_of("\"\xC3\"").find("invalid UTF-8"), std::string::npos);
  EXPECT_NE(error_of("\"\\x\"").find("invalid escape"), std::string::npos);
  EXPECT_NE(error_of("NaN").find("invalid"), std::string::npos);
  EXPECT_NE(error_of("{} x").find("at byte 3"), std::string::npos);
  EXPECT_NE(error_of(std::string(300, '[') + std::string(300, ']')).find("nested too deeply"), std::string::npos);
  EXPECT_TRUE(parse_json(std::string(200, '[') + std::string(200, ']')).has_value());
}

TEST(JsonText, LoneSurrogateBecomesReplacementCharacter) {
  EXPECT_EQ(compact(R"("\ud800x")"), "\"\xEF\xBF\xBDx\"");
}

}  // namespace
}  // namespace ds4
