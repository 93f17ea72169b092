// libFuzzer target: the DSML tool-call parser (engine/dsml_parse.cpp) on arbitrary model output.
// Properties checked on every input, beyond "no crash, no out-of-bounds access":
// The input (after byte 0) is made valid UTF-8 first and cut only at character boundaries: the
// parser is fed complete UTF-8 by the detokenizer (engine/dsml.h).
// * chunking does not matter: the text fed in pieces (cut points drawn from the first input byte)
//   gives the result of the whole text (content, calls with names, arguments and ids, raw_dsml);
// * the events reproduce the result (content; the calls' names and arguments when no warning);
// * re-rendering the parsed calls and parsing that keeps their names, and a second round trip
//   changes nothing (the first may respell numbers as the official encoder does).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/dsml.h"
#include "fuzz/fuzz_support.h"

namespace {

using ds4::DsmlEvent;
using ds4::ParsedAssistantOutput;
using ds4::ToolCall;
using ds4::fuzz::fail;

constexpr uint64_t kSeed = 7;

ParsedAssistantOutput parse_in_pieces(std::string_view text, uint8_t pattern, std::vector<DsmlEvent>& events) {
  ds4::DsmlStreamParser parser(kSeed);
  uint32_t state = pattern * 2654435761u + 1;
  while (!text.empty()) {
    state = state * 1664525u + 1013904223u;
    const size_t n = ds4::fuzz::utf8_boundary(text, std::min<size_t>(text.size(), 1 + (state >> 24) % (pattern % 16 + 1)));
    parser.feed(text.substr(0, n), events);
    text.remove_prefix(n);
  }
  parser.finish(events);
  return parser.result();
}

void check_same_calls(const std::vector<ToolCall>& a, const std::vector<ToolCall>& b, bool ids, const char* what) {
  if (a.size() != b.size()) fail(what, "number of calls differs");
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name) fail(what, a[i].name + " vs " + b[i].name);
    if (a[i].arguments != b[i].arguments) fail(what, a[i].arguments + "\nvs\n" + b[i].arguments);
    if (ids && a[i].id != b[i].id) fail(what, a[i].id + " vs " + b[i].id);
  }
}

// Rendering writes non-string values as Python's json.dumps does (2.5e3 -> 2500.0), so the first
// round trip may respell numbers; names and the number of calls must survive it, and a second
// round trip must change nothing.
void check_round_trip(const std::vector<ToolCall>& calls) {
  const std::vector<ToolCall> once = ds4::parse_dsml_output(ds4::render_dsml_tool_calls(calls), kSeed).tool_calls;
  if (once.size() != calls.size()) fail("render/parse round trip changed the number of calls");
  for (size_t i = 0; i < calls.size(); ++i)
    if (once[i].name != calls[i].name) fail("render/parse round trip changed a name", calls[i].name + " vs " + once[i].name);
  const std::vector<ToolCall> twice = ds4::parse_dsml_output(ds4::render_dsml_tool_calls(once), kSeed).tool_calls;
  check_same_calls(twice, once, /*ids=*/false, "a second render/parse round trip changed the calls");
}

void check_events(const std::vector<DsmlEvent>& events, const ParsedAssistantOutput& r) {
  std::string content;
  std::map<int, std::string> names, args;
  std::vector<int> order;
  for (const DsmlEvent& e : events) {
    if (e.kind == DsmlEvent::Kind::kContent || e.kind == DsmlEvent::Kind::kFallbackText) content += e.text;
    if (e.kind == DsmlEvent::Kind::kToolCallStart) names[e.index] = e.text, order.push_back(e.index);
    if (e.kind == DsmlEvent::Kind::kToolCallArguments) args[e.index] += e.text;
  }
  if (content != r.content) fail("content events differ from the result's content", content + "\nvs\n" + r.content);
  if (!r.warnings.empty()) return;
  if (order.size() != r.tool_calls.size()) fail("tool-call start events differ from the result's calls");
  for (size_t i = 0; i < order.size(); ++i) {
    if (names[order[i]] != r.tool_calls[i].name) fail("tool-call name event differs", names[order[i]]);
    if (args[order[i]] != r.tool_calls[i].arguments) fail("argument events differ", args[order[i]]);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t pattern = data[0];
  // The parser's contract: complete, valid UTF-8 (what the detokenizer produces).
  const std::string text = ds4::fuzz::to_valid_utf8(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));
  const ParsedAssistantOutput whole = ds4::parse_dsml_output(text, kSeed);
  std::vector<DsmlEvent> events;
  const ParsedAssistantOutput pieces = parse_in_pieces(text, pattern, events);
  if (pieces.content != whole.content) fail("chunked content differs", pieces.content + "\nvs\n" + whole.content);
  check_same_calls(pieces.tool_calls, whole.tool_calls, /*ids=*/true, "chunked calls differ");
  if (pieces.raw_dsml != whole.raw_dsml) fail("chunked raw_dsml differs");
  check_events(events, pieces);
  if (!whole.tool_calls.empty()) check_round_trip(whole.tool_calls);
  return 0;
}
