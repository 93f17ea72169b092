// Incremental DSML parser: a state machine over the unconsumed input (see engine/dsml.h).
// Tags are accepted in any of the three dialects (<｜DSML｜x>, <DSML｜x> missing the first bar, and
// plain <x>); a parameter body ends only at the closing tag of its own opening tag's dialect, so
// "</parameter>" inside a <｜DSML｜parameter> string (XML content, say) is data.
#include <algorithm>
#include <cstdio>

#include "engine/dsml.h"
#include "engine/json_text.h"

namespace ds4 {
namespace {

constexpr std::string_view kDialects[] = {"｜DSML｜", "DSML｜", ""};
constexpr std::string_view kBlockStarts[] = {"<｜DSML｜tool_calls>", "<DSML｜tool_calls>", "<tool_calls>"};
constexpr size_t kMaxTagBytes = 4096;

enum class Match { kYes, kPartial, kNo };

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

size_t skip_spaces(std::string_view s, size_t i = 0) {
  while (i < s.size() && is_space(s[i])) ++i;
  return i;
}

// Matches a DSML tag at the start of s: closing "</" D name ">" or opening "<" D name (space|>)
// ... ">". On kYes sets len (bytes of the whole tag) and dialect (D).
Match match_tag(std::string_view s, bool closing, std::string_view name, size_t& len,
                std::string_view& dialect) {
  Match best = Match::kNo;
  for (std::string_view d : kDialects) {
    std::string lit = closing ? "</" : "<";
    lit.append(d).append(name);
    if (s.size() <= lit.size()) {
      if (std::string_view(lit).substr(0, s.size()) == s) best = Match::kPartial;
      continue;
    }
    if (s.substr(0, lit.size()) != lit) continue;
    const char next = s[lit.size()];
    if (closing) {
      if (next != '>') continue;
      len = lit.size() + 1;
      dialect = d;
      return Match::kYes;
    }
    if (next != '>' && !is_space(next)) continue;
    bool quoted = false;
    for (size_t i = lit.size(); i < s.size() && i < kMaxTagBytes; ++i) {
      if (s[i] == '"') quoted = !quoted;
      if (s[i] == '>' && !quoted) {
        len = i + 1;
        dialect = d;
        return Match::kYes;
      }
    }
    return s.size() < kMaxTagBytes ? Match::kPartial : Match::kNo;
  }
  return best;
}

std::string decode_entities(std::string_view s) {
  static constexpr std::pair<std::string_view, char> kEntities[] = {
      {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    bool replaced = false;
    if (s[i] == '&') {
      for (const auto& [entity, ch] : kEntities) {
        if (s.substr(i, entity.size()) != entity) continue;
        out.push_back(ch);
        i += entity.size() - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out.push_back(s[i]);
  }
  return out;
}

// Value of attribute key="..." in a tag, entity-decoded; false when absent.
bool attribute(std::string_view tag, std::string_view key, std::string& value) {
  for (size_t pos = 0;;) {
    pos = tag.find(key, pos);
    if (pos == std::string_view::npos) return false;
    const bool boundary = pos > 0 && is_space(tag[pos - 1]);
    const size_t eq = pos + key.size();
    if (boundary && tag.substr(eq, 2) == "=\"") {
      const size_t end = tag.find('"', eq + 2);
      if (end == std::string_view::npos) return false;
      value = decode_entities(tag.substr(eq + 2, end - eq - 2));
      return true;
    }
    pos = eq;
  }
}

// Longest proper prefix of any of needles that s ends with.
size_t partial_suffix(std::string_view s, std::initializer_list<std::string_view> needles) {
  size_t best = 0;
  for (std::string_view n : needles) {
    for (size_t k = std::min(n.size() - 1, s.size()); k > best; --k) {
      if (s.substr(s.size() - k) == n.substr(0, k)) { best = k; break; }
    }
  }
  return best;
}

std::string json_value_text(std::string_view body, std::string_view key, std::vector<std::string>& warnings) {
  const size_t first = skip_spaces(body);
  if (first == body.size()) return "null";
  std::string error;
  if (const std::optional<JsonValue> v = parse_json(body, &error)) return to_json(*v, JsonStyle::kCompact);
  warnings.push_back("tool call parameter \"" + std::string(key) + "\" has string=\"false\" but is not JSON (" +
                     error + "); passed on as a string");
  std::string out;
  append_json_string(body, out);
  return out;
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

DsmlStreamParser::DsmlStreamParser(uint64_t id_seed) : id_state_(id_seed) {}

std::string DsmlStreamParser::next_id() {
  char buf[40];
  const uint64_t hi = splitmix64(id_state_), lo = splitmix64(id_state_);
  std::snprintf(buf, sizeof(buf), "call_%016llx%016llx", static_cast<unsigned long long>(hi),
                static_cast<unsigned long long>(lo));
  return buf;
}

void DsmlStreamParser::consume(size_t n) {
  raw_.append(buf_, 0, n);
  buf_.erase(0, n);
  scanned_ = 0;
}

size_t DsmlStreamParser::find_from_scanned(std::string_view needle, size_t min_pos) {
  // Bodies can be long and arrive a token at a time: resume the search where the last one ended.
  const size_t from = std::max(min_pos, scanned_ >= needle.size() ? scanned_ - needle.size() + 1 : 0);
  const size_t hit = buf_.find(needle, from);
  scanned_ = hit == std::string::npos ? buf_.size() : 0;
  return hit;
}

void DsmlStreamParser::emit_content(std::string_view text, std::vector<DsmlEvent>& events) {
  if (text.empty()) return;
  if (blocks_closed_ > 0) result_.raw_dsml.clear();  // text after the block: no exact replay
  after_block_ = false;
  result_.content.append(text);
  events.push_back({DsmlEvent::Kind::kContent, -1, {}, std::string(text)});
}

void DsmlStreamParser::emit_arguments(std::string_view json, std::vector<DsmlEvent>& events) {
  if (json.empty()) return;
  call_.arguments.append(json);
  events.push_back({DsmlEvent::Kind::kToolCallArguments, call_index_, {}, std::string(json)});
}

void DsmlStreamParser::begin_member(std::vector<DsmlEvent>& events) {
  std::string prefix = call_params_++ ? "," : "{";
  append_json_string(param_name_, prefix);
  prefix.push_back(':');
  emit_arguments(prefix, events);
}

void DsmlStreamParser::fall_back(std::string_view reason, std::vector<DsmlEvent>& events) {
  const std::string message = "malformed DSML tool call block (" + std::string(reason) + "); returned as text";
  result_.warnings.push_back(message);
  events.push_back({DsmlEvent::Kind::kWarning, -1, {}, message});
  result_.tool_calls.resize(block_first_call_);
  result_.raw_dsml.clear();
  blocks_closed_ = 2;  // no exact replay for this output any more
  after_block_ = false;
  result_.content.append(raw_);
  events.push_back({DsmlEvent::Kind::kFallbackText, -1, {}, raw_});
  raw_.clear();
  state_ = State::kContent;
}

DsmlStreamParser::Step DsmlStreamParser::step_content(std::vector<DsmlEvent>& events) {
  size_t best = std::string::npos, best_len = 0;
  for (std::string_view marker : kBlockStarts) {
    const size_t p = buf_.find(marker);
    if (p < best) best = p, best_len = marker.size();
  }
  if (best != std::string::npos) {
    size_t sep = best;
    while (sep > 0 && is_space(buf_[sep - 1])) --sep;
    emit_content(std::string_view(buf_).substr(0, sep), events);
    raw_.assign(buf_, sep, best + best_len - sep);
    buf_.erase(0, best + best_len);
    block_first_call_ = result_.tool_calls.size();
    state_ = State::kBlock;
    return Step::kProgress;
  }
  // Hold back a possible marker start and the whitespace before it (trimmed if a block follows).
  size_t keep = buf_.size() - partial_suffix(buf_, {kBlockStarts[0], kBlockStarts[1], kBlockStarts[2]});
  while (keep > 0 && is_space(buf_[keep - 1])) --keep;
  emit_content(std::string_view(buf_).substr(0, keep), events);
  buf_.erase(0, keep);
  return Step::kNeedMore;
}

DsmlStreamParser::Step DsmlStreamParser::step_block(std::vector<DsmlEvent>& events) {
  consume(skip_spaces(buf_));
  if (buf_.empty()) return Step::kNeedMore;
  size_t len = 0;
  std::string_view dialect;
  const Match close = match_tag(buf_, true, "tool_calls", len, dialect);
  if (close == Match::kYes) {
    consume(len);
    result_.raw_dsml = blocks_closed_++ == 0 ? raw_ : std::string();
    raw_.clear();
    after_block_ = true;
    state_ = State::kContent;
    return Step::kProgress;
  }
  const Match open = match_tag(buf_, false, "invoke", len, dialect);
  if (open == Match::kYes) {
    std::string name;
    if (!attribute(std::string_view(buf_).substr(0, len), "name", name)) {
      error_ = "invoke tag without a name";
      return Step::kMalformed;
    }
    consume(len);
    call_ = ToolCall{next_id(), name, {}};
    call_params_ = 0;
    call_index_ = next_call_index_++;
    events.push_back({DsmlEvent::Kind::kToolCallStart, call_index_, call_.id, name});
    state_ = State::kInvoke;
    return Step::kProgress;
  }
  if (close == Match::kPartial || open == Match::kPartial) return Step::kNeedMore;
  error_ = "expected an invoke or the end of the tool_calls block";
  return Step::kMalformed;
}

DsmlStreamParser::Step DsmlStreamParser::step_invoke(std::vector<DsmlEvent>& events) {
  consume(skip_spaces(buf_));
  if (buf_.empty()) return Step::kNeedMore;
  size_t len = 0;
  std::string_view dialect;
  const Match close = match_tag(buf_, true, "invoke", len, dialect);
  if (close == Match::kYes) {
    consume(len);
    emit_arguments(call_params_ ? "}" : "{}", events);
    events.push_back({DsmlEvent::Kind::kToolCallEnd, call_index_, call_.id, {}});
    result_.tool_calls.push_back(std::move(call_));
    state_ = State::kBlock;
    return Step::kProgress;
  }
  const Match open = match_tag(buf_, false, "parameter", len, dialect);
  if (open == Match::kYes) {
    const std::string tag = buf_.substr(0, len);
    if (!attribute(tag, "name", param_name_)) {
      error_ = "parameter tag without a name";
      return Step::kMalformed;
    }
    consume(len);
    param_closer_ = "</" + std::string(dialect) + "parameter>";
    std::string type;
    const bool typed = attribute(tag, "string", type);
    param_value_.clear();
    if (!typed) {
      state_ = State::kUntypedBody;
    } else if (type == "false") {
      state_ = State::kJsonBody;
    } else {
      begin_member(events);
      emit_arguments("\"", events);
      state_ = State::kStringBody;
    }
    return Step::kProgress;
  }
  if (close == Match::kPartial || open == Match::kPartial) return Step::kNeedMore;
  error_ = "expected a parameter or the end of the invoke";
  return Step::kMalformed;
}

DsmlStreamParser::Step DsmlStreamParser::step_string_body(std::vector<DsmlEvent>& events) {
  const std::string escaped = "&lt;" + param_closer_.substr(1);
  const size_t close = buf_.find(param_closer_);
  const size_t esc = buf_.find(escaped);
  std::string json;
  if (esc < close) {  // the escaped closing tag is data: the literal tag
    append_json_string_body(std::string_view(buf_).substr(0, esc), json);
    append_json_string_body(param_closer_, json);
    emit_arguments(json, events);
    consume(esc + escaped.size());
    return Step::kProgress;
  }
  if (close != std::string::npos) {
    append_json_string_body(std::string_view(buf_).substr(0, close), json);
    json.push_back('"');
    emit_arguments(json, events);
    consume(close + param_closer_.size());
    state_ = State::kInvoke;
    return Step::kProgress;
  }
  const size_t keep = buf_.size() - partial_suffix(buf_, {param_closer_, escaped});
  append_json_string_body(std::string_view(buf_).substr(0, keep), json);
  emit_arguments(json, events);
  consume(keep);
  return Step::kNeedMore;
}

DsmlStreamParser::Step DsmlStreamParser::step_json_body(std::vector<DsmlEvent>& events) {
  const size_t close = find_from_scanned(param_closer_, 0);
  if (close == std::string::npos) return Step::kNeedMore;
  begin_member(events);
  emit_arguments(json_value_text(std::string_view(buf_).substr(0, close), param_name_, result_.warnings), events);
  consume(close + param_closer_.size());
  state_ = State::kInvoke;
  return Step::kProgress;
}

DsmlStreamParser::Step DsmlStreamParser::step_untyped_body(std::vector<DsmlEvent>& events) {
  // No string attribute: nested parameters make an object (a drift seen in long generations),
  // anything else is a string.
  const size_t first = skip_spaces(buf_);
  if (first == buf_.size()) return Step::kNeedMore;
  size_t len = 0;
  std::string_view dialect;
  const Match nested = match_tag(std::string_view(buf_).substr(first), false, "parameter", len, dialect);
  if (nested == Match::kPartial) return Step::kNeedMore;
  if (nested == Match::kYes) {
    consume(first);
    nested_json_.assign(1, '{');
    state_ = State::kNested;
    return Step::kProgress;
  }
  begin_member(events);
  emit_arguments("\"", events);
  state_ = State::kStringBody;
  return Step::kProgress;
}

DsmlStreamParser::Step DsmlStreamParser::step_nested(std::vector<DsmlEvent>& events) {
  const size_t first = skip_spaces(buf_);
  if (first == buf_.size()) return Step::kNeedMore;
  const std::string_view rest = std::string_view(buf_).substr(first);
  size_t len = 0;
  std::string_view dialect;
  const Match outer_close = match_tag(rest, true, "parameter", len, dialect);
  const Match invoke_close = match_tag(rest, true, "invoke", len, dialect);
  if (outer_close == Match::kYes || invoke_close == Match::kYes) {
    begin_member(events);
    emit_arguments(nested_json_ + "}", events);
    // A missing outer closing tag is tolerated: the invoke's end then closes the parameter too.
    consume(outer_close == Match::kYes ? first + len : first);
    state_ = State::kInvoke;
    return Step::kProgress;
  }
  const Match leaf = match_tag(rest, false, "parameter", len, dialect);
  if (leaf == Match::kYes) {
    const std::string_view tag = rest.substr(0, len);
    std::string name, type;
    if (!attribute(tag, "name", name)) {
      error_ = "nested parameter tag without a name";
      return Step::kMalformed;
    }
    const std::string closer = "</" + std::string(dialect) + "parameter>";
    const size_t close_in_buf = find_from_scanned(closer, first + len);
    if (close_in_buf == std::string::npos) return Step::kNeedMore;
    const size_t close = close_in_buf - first;
    const std::string_view body = rest.substr(len, close - len);
    if (nested_json_.size() > 1) nested_json_.push_back(',');
    append_json_string(name, nested_json_);
    nested_json_.push_back(':');
    if (attribute(tag, "string", type) && type == "false") {
      nested_json_ += json_value_text(body, name, result_.warnings);
    } else {
      append_json_string(body, nested_json_);
    }
    consume(first + close + closer.size());
    return Step::kProgress;
  }
  if (outer_close == Match::kPartial || invoke_close == Match::kPartial || leaf == Match::kPartial)
    return Step::kNeedMore;
  error_ = "unexpected text among nested parameters";
  return Step::kMalformed;
}

DsmlStreamParser::Step DsmlStreamParser::step(std::vector<DsmlEvent>& events) {
  switch (state_) {
    case State::kContent: return step_content(events);
    case State::kBlock: return step_block(events);
    case State::kInvoke: return step_invoke(events);
    case State::kStringBody: return step_string_body(events);
    case State::kJsonBody: return step_json_body(events);
    case State::kUntypedBody: return step_untyped_body(events);
    case State::kNested: return step_nested(events);
  }
  return Step::kNeedMore;
}

void DsmlStreamParser::run(std::vector<DsmlEvent>& events) {
  for (;;) {
    const Step s = step(events);
    if (s == Step::kNeedMore) return;
    if (s == Step::kMalformed) fall_back(error_, events);
  }
}

void DsmlStreamParser::feed(std::string_view text, std::vector<DsmlEvent>& events) {
  buf_.append(text);
  run(events);
}

void DsmlStreamParser::finish(std::vector<DsmlEvent>& events) {
  if (state_ != State::kContent) {
    consume(buf_.size());
    fall_back("unterminated tool call block", events);
  }
  if (after_block_ && skip_spaces(buf_) == buf_.size()) buf_.clear();  // whitespace after the block
  emit_content(buf_, events);
  buf_.clear();
}

ParsedAssistantOutput parse_dsml_output(std::string_view content_text, uint64_t id_seed) {
  DsmlStreamParser parser(id_seed);
  std::vector<DsmlEvent> events;
  parser.feed(content_text, events);
  parser.finish(events);
  return parser.result();
}

}  // namespace ds4
