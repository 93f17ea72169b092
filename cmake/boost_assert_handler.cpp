// Boost's assertion handler for the sanitizer builds (cmake/Sanitizers.cmake defines
// BOOST_ENABLE_ASSERT_HANDLER there, so Boost's asserts stay on in those Debug builds and land
// here). Every failed Boost assertion aborts with its place, as assert() would, except one that
// is known to be wrong: Boost.Beast 1.81's chunk-header parser asserts `n >= 5`, which a request
// delivered in small pieces (e.g. "0\r\n", then "\r", then "\n") legitimately reaches with 3 or 4
// bytes; the code after it then asks for more input, as it should. Beast fixed the assertion
// upstream (boostorg/beast pull request 2861, 2024); our fuzzer found it through the server's
// parser. Release builds have no Boost assertions (NDEBUG).
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace boost {

namespace {

bool known_wrong_assertion(std::string_view expr, std::string_view file) {
  constexpr std::string_view kBeastParser = "boost/beast/http/impl/basic_parser.ipp";
  return expr == "n >= 5" && file.size() >= kBeastParser.size() &&
         file.substr(file.size() - kBeastParser.size()) == kBeastParser;
}

}  // namespace

void assertion_failed_msg(char const* expr, char const* msg, char const* function, char const* file, long line) {
  if (known_wrong_assertion(expr, file)) return;
  std::fprintf(stderr, "%s:%ld: %s: Boost assertion `%s' failed%s%s\n", file, line, function, expr, msg ? ": " : "",
               msg ? msg : "");
  std::abort();
}

void assertion_failed(char const* expr, char const* function, char const* file, long line) {
  assertion_failed_msg(expr, nullptr, function, file, line);
}

}  // namespace boost
