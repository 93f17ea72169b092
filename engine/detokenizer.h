// Streaming detokenizer for one generation: token ids in, final text out, split into reasoning
// (inside <think>...</think>) and content. Invariants: emitted text is always valid UTF-8 and
// complete (bytes of a character split across tokens are held until it completes; ill-formed
// bytes become U+FFFD); text that could still become "</think>" or a stop string is held back; a
// stop string matches across token boundaries and neither it nor anything after it is emitted.
// Control tokens (BOS, EOS, pad, placeholders) produce no text (Tokenizer::shows_in_output); the
// caller stops on EOS itself.
// One per request, used by the HTTP layer before DsmlStreamParser (which gets the content).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tokenizer.h"

namespace ds4 {

struct DetokenizerOptions {
  // The prompt ended with <think>: output starts as reasoning until </think>. When false, output
  // is content, except that a leading <think> (the model choosing to think) opens reasoning.
  bool thinking = false;
  std::vector<std::string> stop;   // stop strings; empty strings are ignored
  bool stop_in_reasoning = false;  // also look for stop strings inside reasoning
};

struct DetokenizerOutput {
  std::string reasoning;  // appended reasoning text
  std::string content;    // appended content text
  bool stopped = false;   // a stop string matched: generation should end
  int stop_index = -1;    // index of the matched string in DetokenizerOptions::stop
};

class StreamingDetokenizer {
 public:
  StreamingDetokenizer(const Tokenizer& tokenizer, DetokenizerOptions options);

  // Adds one generated token; appends newly final text to out. Ignored after a stop.
  void push(int32_t id, DetokenizerOutput& out);
  // End of generation: flushes everything held back to out.
  void finish(DetokenizerOutput& out);

  bool stopped() const { return stopped_; }
  bool in_reasoning() const { return channel_ == Channel::kReasoning; }

 private:
  enum class Channel { kReasoning, kContent };
  void process(DetokenizerOutput& out, bool final);
  bool process_reasoning(DetokenizerOutput& out, bool final);
  bool process_content(DetokenizerOutput& out, bool final);
  // Bytes at the end of text_ to hold back: a partial tag and, when stops, a partial stop string.
  size_t hold_for(std::string_view tag, bool stops) const;
  bool find_stop(size_t& pos, size_t& len, int& index) const;

  const Tokenizer& tok_;
  DetokenizerOptions options_;
  Channel channel_;
  bool at_start_ = true;   // nothing emitted yet in this channel phase (leading <think> check)
  bool stopped_ = false;
  std::string bytes_;      // raw bytes of an incomplete UTF-8 character
  std::string text_;       // complete text not yet emitted
};

}  // namespace ds4
