// Unicode class lookup (ASCII table + binary search over generated runs) and UTF-8 decoding.
#include "engine/unicode_class.h"

#include <algorithm>
#include <array>

namespace ds4::unicode {
namespace {

struct ClassRun {
  uint32_t first;  // first code point of the run
  uint8_t cls;     // class of every code point up to the next run's first
};

constexpr ClassRun kRuns[] = {
#include "engine/unicode_tables.inc"
};

constexpr std::array<uint8_t, 128> make_ascii_classes() {
  std::array<uint8_t, 128> out{};
  size_t run = 0;
  for (uint32_t cp = 0; cp < 128; ++cp) {
    while (run + 1 < std::size(kRuns) && kRuns[run + 1].first <= cp) ++run;
    out[cp] = kRuns[run].cls;
  }
  return out;
}
constexpr std::array<uint8_t, 128> kAsciiClasses = make_ascii_classes();

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

}  // namespace

uint8_t char_class(char32_t cp) {
  if (cp < 128) return kAsciiClasses[cp];
  if (cp > 0x10FFFF) return 0;
  const auto* it = std::upper_bound(std::begin(kRuns), std::end(kRuns), static_cast<uint32_t>(cp),
                                    [](uint32_t v, const ClassRun& r) { return v < r.first; });
  return (it - 1)->cls;
}

Utf8Unit decode_utf8(const char* p, size_t n) {
  const auto b0 = static_cast<unsigned char>(p[0]);
  const Utf8Unit invalid{static_cast<char32_t>(0xDC00 + b0), 1, false};
  if (b0 < 0x80) return {b0, 1, true};
  // Per lead byte: total length and the allowed range of the second byte (RFC 3629 table).
  int len = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
  else if (b0 == 0xE0) len = 3, lo = 0xA0;
  else if (b0 >= 0xE1 && b0 <= 0xEC) len = 3;
  else if (b0 == 0xED) len = 3, hi = 0x9F;
  else if (b0 >= 0xEE && b0 <= 0xEF) len = 3;
  else if (b0 == 0xF0) len = 4, lo = 0x90;
  else if (b0 >= 0xF1 && b0 <= 0xF3) len = 4;
  else if (b0 == 0xF4) len = 4, hi = 0x8F;
  else return invalid;
  if (n < static_cast<size_t>(len)) return invalid;
  const auto b1 = static_cast<unsigned char>(p[1]);
  if (b1 < lo || b1 > hi) return invalid;
  char32_t cp = b0 & (0xFF >> (len + 1));
  cp = (cp << 6) | (b1 & 0x3F);
  for (int i = 2; i < len; ++i) {
    const auto b = static_cast<unsigned char>(p[i]);
    if (!is_continuation(b)) return invalid;
    cp = (cp << 6) | (b & 0x3F);
  }
  return {cp, static_cast<uint8_t>(len), true};
}

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const Utf8Unit u = decode_utf8(s.data() + i, s.size() - i);
    if (!u.valid) return false;
    i += u.length;
  }
  return true;
}

size_t complete_utf8_prefix(std::string_view s) {
  // Look at the last (up to) 3 bytes for a lead byte whose sequence is cut short but so far
  // well-formed; everything before it is complete.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const size_t start = n - back;
    const auto b = static_cast<unsigned char>(s[start]);
    if (is_continuation(b)) continue;
    if (b < 0xC2 || b > 0xF4) return n;  // ASCII or a byte that can never lead: complete
    const size_t need = b <= 0xDF ? 2 : b <= 0xEF ? 3 : 4;
    if (back >= need) return n;  // the sequence is long enough: complete (valid or not)
    // Check that the bytes present could still start a valid sequence.
    char buf[4] = {s[start], '\x80', '\x80', '\x80'};
    for (size_t i = 1; i < back; ++i) buf[i] = s[start + i];
    // Fill the missing bytes with the smallest continuation that the lead allows.
    if (back == 1) buf[1] = b == 0xE0 ? '\xA0' : b == 0xF0 ? '\x90' : '\x80';
    return decode_utf8(buf, need).valid ? start : n;
  }
  return n;
}

void append_utf8_lossy(std::string_view s, std::string& out) {
  for (size_t i = 0; i < s.size();) {
    const Utf8Unit u = decode_utf8(s.data() + i, s.size() - i);
    if (u.valid) {
      out.append(s.substr(i, u.length));
      i += u.length;
      continue;
    }
    // Maximal subpart: the lead byte plus the continuation bytes that could still have been
    // part of a valid sequence (checked by decoding with the tail padded to a valid minimum).
    size_t part = 1;
    const auto b0 = static_cast<unsigned char>(s[i]);
    const size_t need = b0 >= 0xC2 && b0 <= 0xDF ? 2 : b0 >= 0xE0 && b0 <= 0xEF ? 3 : b0 >= 0xF0 && b0 <= 0xF4 ? 4 : 1;
    for (size_t k = 1; k < need && i + k < s.size(); ++k) {
      char probe[4] = {s[i], '\x80', '\x80', '\x80'};
      for (size_t j = 1; j <= k; ++j) probe[j] = s[i + j];
      if (!decode_utf8(probe, need).valid) break;
      part = k + 1;
    }
    out += "\xEF\xBF\xBD";
    i += part;
  }
}

}  // namespace ds4::unicode
