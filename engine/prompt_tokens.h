// A rendered chat prompt to token ids, with the earlier assistant turns replayed as the model
// sampled them (ToolCallReplay::lookup_turn) where the rendered text of the turn is exactly what
// those ids decode to; the rest is encoded with Tokenizer::encode(text, parse_special = true).
// Because every generated span starts after and ends with a special token (ChatRenderResult::
// generated_spans), piecewise encoding equals encoding the whole text, and a resent conversation
// tokenizes to the sequence the engine computed last turn, so the prefix cache covers it.
// Used by the HTTP prepare step (generation and /tokenize).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/chat_template.h"
#include "engine/tokenizer.h"
#include "engine/tool_call_replay.h"

namespace ds4 {

struct PromptTokens {
  std::vector<int32_t> ids;
  int64_t replayed_turns = 0;  // generated spans taken from the replay
};

// replay may be null (then the result is tokenizer.encode(rendered.prompt, true)).
PromptTokens tokenize_chat_prompt(const Tokenizer& tokenizer, const ChatRenderResult& rendered, ToolCallReplay* replay);

// The text and ids to remember after a generation: `ids` = the prompt's forced tail and the
// sampled tokens, extended with EOS when the turn did not end with it (the template closes every
// assistant turn with EOS). Returns false (nothing to remember) when ids is empty.
bool generated_turn_entry(const Tokenizer& tokenizer, std::vector<int32_t>& ids, std::string& text);

}  // namespace ds4
