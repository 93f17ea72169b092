// Piecewise prompt tokenization with replay of generated turns (see engine/prompt_tokens.h).
#include "engine/prompt_tokens.h"

#include <string_view>

namespace ds4 {

PromptTokens tokenize_chat_prompt(const Tokenizer& tokenizer, const ChatRenderResult& rendered, ToolCallReplay* replay) {
  PromptTokens out;
  const std::string_view prompt = rendered.prompt;
  size_t pos = 0;
  for (const auto& [begin, end] : rendered.generated_spans) {
    if (!replay || begin < pos || end > prompt.size()) continue;
    const std::optional<std::vector<int32_t>> ids = replay->lookup_turn(prompt.substr(begin, end - begin));
    if (!ids) continue;
    tokenizer.encode_append(prompt.substr(pos, begin - pos), /*parse_special=*/true, out.ids);
    out.ids.insert(out.ids.end(), ids->begin(), ids->end());
    ++out.replayed_turns;
    pos = end;
  }
  tokenizer.encode_append(prompt.substr(pos), /*parse_special=*/true, out.ids);
  return out;
}

bool generated_turn_entry(const Tokenizer& tokenizer, std::vector<int32_t>& ids, std::string& text) {
  if (ids.empty()) return false;
  const int32_t eos = tokenizer.chat_ids().eos;
  if (ids.back() != eos) ids.push_back(eos);
  text = tokenizer.decode(ids);
  return true;
}

}  // namespace ds4
