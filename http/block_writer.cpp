// BlockWriter (see block_writer.h): AssistantEvents -> ordered output blocks and their hooks.
#include "http/block_writer.h"

#include "engine/json_text.h"

namespace ds4::http {

using Kind = AssistantEvent::Kind;

BlockWriter::BlockWriter(const Tokenizer& tokenizer, ResponseSetup setup, AssistantStreamOptions options)
    : setup_(std::move(setup)), stop_strings_(options.stop), stream_(tokenizer, options),
      think_end_id_(tokenizer.chat_ids().think_end), in_reasoning_(options.thinking) {}

void BlockWriter::count_reasoning(int32_t token, bool sampled) {
  if (!in_reasoning_) return;
  if (token == think_end_id_) in_reasoning_ = false;
  else if (sampled) ++reasoning_tokens_;
}

void BlockWriter::add_forced(std::span<const int32_t> tokens) {
  for (int32_t t : tokens) {
    count_reasoning(t, false);
    stream_.push(t, held_);
  }
}

void BlockWriter::add_tokens(std::span<const int32_t> tokens, std::span<const SampledLogprobs>,
                             const RequestUsage& usage, std::string& out) {
  std::string* sink = setup_.stream ? &out : nullptr;
  if (!started_) {
    started_ = true;
    if (sink) on_start(usage, out);
  }
  std::vector<AssistantEvent> events = std::move(held_);
  held_.clear();
  for (int32_t t : tokens) {
    if (stream_.stopped()) break;
    ++completion_tokens_;
    count_reasoning(t, true);
    stream_.push(t, events);
  }
  route(events, sink);
}

void BlockWriter::open(OutputBlock block, std::string* out) {
  close_current(out);
  blocks_.push_back(std::move(block));
  open_ = true;
  if (out) on_open(blocks_.size() - 1, *out);
}

void BlockWriter::close_current(std::string* out) {
  if (!open_) return;
  open_ = false;
  if (out) on_close(blocks_.size() - 1, *out);
}

void BlockWriter::route(std::vector<AssistantEvent>& events, std::string* out) {
  for (AssistantEvent& e : events) {
    const bool in = open_ && !blocks_.empty();
    switch (e.kind) {
      case Kind::kReasoning:
      case Kind::kContent: {
        if (e.text.empty()) break;
        const BlockKind kind = e.kind == Kind::kReasoning ? BlockKind::kReasoning : BlockKind::kText;
        if (!in || blocks_.back().kind != kind) open(OutputBlock{kind, "", "", "", false}, out);
        blocks_.back().text += e.text;
        if (out) on_delta(blocks_.size() - 1, e.text, *out);
        break;
      }
      case Kind::kToolCallStart:
        open(OutputBlock{BlockKind::kToolCall, e.id, e.text, "", false}, out);
        break;
      case Kind::kToolCallArguments:
        if (!in || blocks_.back().kind != BlockKind::kToolCall) break;  // never happens: args follow their start
        blocks_.back().text += e.text;
        if (out) on_delta(blocks_.size() - 1, e.text, *out);
        break;
      case Kind::kToolCallEnd:
        if (in && blocks_.back().kind == BlockKind::kToolCall) {
          blocks_.back().complete = true;
          close_current(out);
        }
        break;
      case Kind::kWarning: break;
    }
  }
}

void BlockWriter::decide_end(FinishReason reason) {
  bool calls = false;
  for (const OutputBlock& b : blocks_) calls = calls || (b.kind == BlockKind::kToolCall && b.complete);
  if (stream_.stopped()) end_ = TurnEnd::kStopSequence;
  else if (reason == FinishReason::kLength) end_ = TurnEnd::kMaxTokens;
  else if (reason == FinishReason::kAbort) end_ = TurnEnd::kAborted;
  else end_ = calls ? TurnEnd::kToolUse : TurnEnd::kEndTurn;
  switch (end_) {
    case TurnEnd::kMaxTokens: openai_reason_ = "length"; break;
    case TurnEnd::kAborted: openai_reason_ = "abort"; break;
    case TurnEnd::kToolUse: openai_reason_ = "tool_calls"; break;
    default: openai_reason_ = "stop"; break;
  }
}

std::string BlockWriter::finish(FinishReason reason, const RequestUsage& usage) {
  std::string out;
  std::string* sink = setup_.stream ? &out : nullptr;
  if (!started_) {
    started_ = true;
    if (sink) on_start(usage, out);
  }
  std::vector<AssistantEvent> events = std::move(held_);
  held_.clear();
  stream_.finish(events);
  route(events, sink);
  decide_end(reason);  // before the last block closes: its closing events may depend on it
  close_current(sink);
  if (!setup_.stream) return body(usage);
  out += end_stream(usage);
  return out;
}

std::string BlockWriter::matched_stop() const {
  const int i = stream_.message().stop_index;
  return i >= 0 && static_cast<size_t>(i) < stop_strings_.size() ? stop_strings_[static_cast<size_t>(i)] : "";
}

std::string BlockWriter::arguments_object(const std::string& arguments) {
  if (arguments.empty()) return "{}";
  const std::optional<JsonValue> v = parse_json(arguments);
  if (v && v->kind == JsonValue::Kind::kObject) return to_json(*v, JsonStyle::kCompact);
  std::string out = "{\"arguments\":";
  append_json_string(arguments, out);
  out += '}';
  return out;
}

}  // namespace ds4::http
