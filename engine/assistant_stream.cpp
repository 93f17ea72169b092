// Detokenizer -> (content) -> DSML parser, flattened into AssistantEvents.
#include "engine/assistant_stream.h"

namespace ds4 {

AssistantStream::AssistantStream(const Tokenizer& tokenizer, AssistantStreamOptions options)
    : detok_(tokenizer, DetokenizerOptions{options.thinking, options.stop, options.stop_in_reasoning}),
      dsml_(options.tool_id_seed),
      parse_tool_calls_(options.parse_tool_calls) {}

void AssistantStream::forward_dsml(std::vector<DsmlEvent>& dsml, std::vector<AssistantEvent>& events) {
  using K = AssistantEvent::Kind;
  for (DsmlEvent& e : dsml) {
    switch (e.kind) {
      case DsmlEvent::Kind::kContent:
      case DsmlEvent::Kind::kFallbackText: events.push_back({K::kContent, -1, {}, std::move(e.text)}); break;
      case DsmlEvent::Kind::kToolCallStart: events.push_back({K::kToolCallStart, e.index, std::move(e.id), std::move(e.text)}); break;
      case DsmlEvent::Kind::kToolCallArguments: events.push_back({K::kToolCallArguments, e.index, {}, std::move(e.text)}); break;
      case DsmlEvent::Kind::kToolCallEnd: events.push_back({K::kToolCallEnd, e.index, std::move(e.id), {}}); break;
      case DsmlEvent::Kind::kWarning: events.push_back({K::kWarning, -1, {}, std::move(e.text)}); break;
    }
  }
  dsml.clear();
}

void AssistantStream::forward(const DetokenizerOutput& out, bool final, std::vector<AssistantEvent>& events) {
  if (!out.reasoning.empty()) {
    message_.reasoning += out.reasoning;
    events.push_back({AssistantEvent::Kind::kReasoning, -1, {}, out.reasoning});
  }
  if (out.stopped) {
    message_.stopped_by_string = true;
    message_.stop_index = out.stop_index;
  }
  if (!parse_tool_calls_) {
    if (!out.content.empty()) {
      message_.content += out.content;
      events.push_back({AssistantEvent::Kind::kContent, -1, {}, out.content});
    }
    return;
  }
  std::vector<DsmlEvent> dsml;
  dsml_.feed(out.content, dsml);
  if (final) {
    dsml_.finish(dsml);
    const ParsedAssistantOutput& r = dsml_.result();
    message_.content = r.content;
    message_.tool_calls = r.tool_calls;
    message_.raw_dsml = r.raw_dsml;
    message_.warnings = r.warnings;
  }
  forward_dsml(dsml, events);
}

void AssistantStream::push(int32_t id, std::vector<AssistantEvent>& events) {
  if (finished_) return;
  DetokenizerOutput out;
  detok_.push(id, out);
  forward(out, false, events);
}

void AssistantStream::finish(std::vector<AssistantEvent>& events) {
  if (finished_) return;
  finished_ = true;
  DetokenizerOutput out;
  detok_.finish(out);
  forward(out, true, events);
}

}  // namespace ds4
