// libFuzzer target: the load tester's SSE parser and OpenAI chunk reader (loadtest/sse.cpp) on
// arbitrary response bytes. Properties: the events do not depend on how the stream is split into
// reads (whole, pieces drawn from the first input byte, byte by byte), and every event's data is
// read by parse_stream_event without a crash (a bad chunk is an error string, not an exception).
#include <cstdint>
#include <string>
#include <vector>

#include <simdjson.h>

#include "fuzz/fuzz_support.h"
#include "loadtest/sse.h"

namespace {

namespace lt = ds4::loadtest;

std::vector<std::string> events_in_steps(std::string_view bytes, uint8_t pattern) {
  lt::SseParser parser;
  std::vector<std::string> events;
  auto sink = [&](std::string_view d) { events.emplace_back(d); };
  uint32_t state = pattern + 1u;
  while (!bytes.empty()) {
    state = state * 1664525u + 1013904223u;
    const size_t n = pattern == 0 ? bytes.size() : std::min<size_t>(bytes.size(), 1 + (state >> 24) % pattern);
    parser.feed(bytes.substr(0, n), sink);
    bytes.remove_prefix(n);
  }
  parser.finish(sink);
  return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::vector<std::string> whole = events_in_steps(bytes, 0);
  if (events_in_steps(bytes, data[0]) != whole) ds4::fuzz::fail("SSE events depend on the read sizes");
  if (events_in_steps(bytes, 1) != whole) ds4::fuzz::fail("SSE events differ when fed byte by byte");
  simdjson::dom::parser json;
  for (const std::string& event : whole) {
    lt::StreamEvent out;
    const std::string error = lt::parse_stream_event(json, event, &out);
    if (!error.empty() && (out.done || out.has_token)) ds4::fuzz::fail("a refused chunk was still read as a token", event);
  }
  return 0;
}
