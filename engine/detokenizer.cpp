// Streaming detokenizer: bytes -> complete UTF-8 -> reasoning/content split -> stop strings.
#include "engine/detokenizer.h"

#include <algorithm>

#include "engine/unicode_class.h"

namespace ds4 {
namespace {

constexpr std::string_view kThinkBegin = "<think>";
constexpr std::string_view kThinkEnd = "</think>";

// Longest proper prefix of needle that text ends with.
size_t partial_suffix(std::string_view text, std::string_view needle) {
  if (needle.empty()) return 0;
  for (size_t k = std::min(needle.size() - 1, text.size()); k > 0; --k)
    if (text.substr(text.size() - k) == needle.substr(0, k)) return k;
  return 0;
}

}  // namespace

StreamingDetokenizer::StreamingDetokenizer(const Tokenizer& tokenizer, DetokenizerOptions options)
    : tok_(tokenizer), options_(std::move(options)),
      channel_(options_.thinking ? Channel::kReasoning : Channel::kContent) {}

void StreamingDetokenizer::push(int32_t id, DetokenizerOutput& out) {
  if (stopped_ || !tok_.shows_in_output(id)) return;
  bytes_ += tok_.token_bytes(id);
  const size_t complete = unicode::complete_utf8_prefix(bytes_);
  unicode::append_utf8_lossy(std::string_view(bytes_).substr(0, complete), text_);
  bytes_.erase(0, complete);
  process(out, false);
}

void StreamingDetokenizer::finish(DetokenizerOutput& out) {
  if (stopped_) return;
  unicode::append_utf8_lossy(bytes_, text_);
  bytes_.clear();
  process(out, true);
}

bool StreamingDetokenizer::find_stop(size_t& pos, size_t& len, int& index) const {
  pos = std::string::npos;
  for (size_t i = 0; i < options_.stop.size(); ++i) {
    if (options_.stop[i].empty()) continue;  // ignored, but indices stay those of the request
    const size_t p = text_.find(options_.stop[i]);
    if (p < pos) pos = p, len = options_.stop[i].size(), index = static_cast<int>(i);
  }
  return pos != std::string::npos;
}

size_t StreamingDetokenizer::hold_for(std::string_view tag, bool stops) const {
  size_t hold = partial_suffix(text_, tag);
  if (stops)
    for (const std::string& s : options_.stop) hold = std::max(hold, partial_suffix(text_, s));
  return hold;
}

// Returns true when it switched channel or stopped and the loop should continue / end.
bool StreamingDetokenizer::process_reasoning(DetokenizerOutput& out, bool final) {
  if (at_start_) {  // the model may repeat the opening tag the prompt already holds
    if (!final && text_.size() < kThinkBegin.size() && kThinkBegin.starts_with(text_)) return false;
    if (text_.starts_with(kThinkBegin)) text_.erase(0, kThinkBegin.size());
    if (!text_.empty()) at_start_ = false;
  }
  const size_t end = text_.find(kThinkEnd);
  size_t stop_pos = 0, stop_len = 0;
  int stop_index = -1;
  const bool stop = options_.stop_in_reasoning && find_stop(stop_pos, stop_len, stop_index) &&
                    (end == std::string::npos || stop_pos < end);
  if (stop) {
    out.reasoning.append(text_, 0, stop_pos);
    out.stopped = stopped_ = true;
    out.stop_index = stop_index;
    text_.clear();
    return false;
  }
  if (end != std::string::npos) {
    out.reasoning.append(text_, 0, end);
    text_.erase(0, end + kThinkEnd.size());
    channel_ = Channel::kContent;
    at_start_ = false;  // a <think> right after </think> is content
    return true;
  }
  const size_t keep = final ? text_.size() : text_.size() - hold_for(kThinkEnd, options_.stop_in_reasoning);
  out.reasoning.append(text_, 0, keep);
  text_.erase(0, keep);
  return false;
}

bool StreamingDetokenizer::process_content(DetokenizerOutput& out, bool final) {
  if (at_start_) {  // non-thinking prompt, but the output opens with <think>: it is reasoning
    if (!final && text_.size() < kThinkBegin.size() && kThinkBegin.starts_with(text_)) return false;
    if (!text_.empty()) at_start_ = false;
    if (text_.starts_with(kThinkBegin)) {
      text_.erase(0, kThinkBegin.size());
      channel_ = Channel::kReasoning;
      return true;
    }
  }
  size_t stop_pos = 0, stop_len = 0;
  int stop_index = -1;
  if (find_stop(stop_pos, stop_len, stop_index)) {
    out.content.append(text_, 0, stop_pos);
    out.stopped = stopped_ = true;
    out.stop_index = stop_index;
    text_.clear();
    return false;
  }
  const size_t keep = final ? text_.size() : text_.size() - hold_for({}, true);
  out.content.append(text_, 0, keep);
  text_.erase(0, keep);
  return false;
}

void StreamingDetokenizer::process(DetokenizerOutput& out, bool final) {
  for (;;) {
    const bool again = channel_ == Channel::kReasoning ? process_reasoning(out, final) : process_content(out, final);
    if (!again || stopped_) return;
  }
}

}  // namespace ds4
