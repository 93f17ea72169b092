// Request -> engine request + response setup (see generation_prepare.h).
#include "http/generation_prepare.h"

#include "engine/dsml.h"
#include "engine/prompt_tokens.h"

namespace ds4::http {

namespace {

// max_tokens given or the rest of the context; the context check with llama.cpp-style counts.
std::optional<ApiError> resolve_max_tokens(const PrepareContext& ctx, const GenerationFields& g, int64_t prompt_tokens,
                                           int64_t& max_tokens) {
  const int64_t room = ctx.max_model_len - prompt_tokens;
  max_tokens = g.max_tokens.value_or(room);
  if (room < 1 || prompt_tokens + max_tokens > ctx.max_model_len)
    return context_length_exceeded(prompt_tokens, std::max<int64_t>(max_tokens, 1), ctx.max_model_len);
  return std::nullopt;
}

// Fields shared by chat and completions.
std::optional<ApiError> fill_common(const PrepareContext& ctx, const GenerationFields& g, PreparedGeneration& out) {
  GenerationRequest& r = out.request;
  if (auto e = resolve_max_tokens(ctx, g, static_cast<int64_t>(r.prompt_tokens.size()), r.max_tokens)) return e;
  for (size_t i = 0; i < g.stop_token_ids.size(); ++i)
    if (!ctx.tokenizer.is_valid_id(g.stop_token_ids[i]))
      return invalid_param("stop_token_ids", "'stop_token_ids[" + std::to_string(i) + "]' = " +
                                                 std::to_string(g.stop_token_ids[i]) + " is not a token id (vocabulary of " +
                                                 std::to_string(ctx.tokenizer.vocab_size()) + ")");
  r.sampling = g.sampling;
  if (!g.seed_given) r.sampling.seed = ctx.fresh_seed;
  r.stop_token_ids = g.stop_token_ids;
  r.ignore_eos = g.ignore_eos;
  r.priority = g.priority;
  r.logprobs = g.logprobs;
  r.top_logprobs = g.top_logprobs;

  ResponseSetup& s = out.setup;
  s.model = ctx.served_name;
  s.stream = g.stream;
  s.include_usage = g.include_usage || g.continuous_usage;
  s.continuous_usage = g.continuous_usage;
  s.return_token_ids = g.return_token_ids;
  s.logprobs = g.logprobs;
  s.top_logprobs = g.top_logprobs;
  s.prompt_tokens = static_cast<int64_t>(r.prompt_tokens.size());
  if (g.return_token_ids) s.prompt_token_ids = r.prompt_tokens;
  out.stream_options.stop = g.stop;
  out.stream_options.tool_id_seed = r.sampling.seed ^ 0x7f4a7c159e3779b9ull;
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> check_model(const PrepareContext& ctx, const std::string& model) {
  if (!model.empty() && model != ctx.served_name) return model_not_found(model);
  return std::nullopt;
}

std::string forced_tool_call_opening(const std::string& name) {
  // Render a call to a placeholder name and keep the text before it: the tags stay exactly the
  // renderer's (block opening, invoke tag), whatever their spelling.
  const std::string marker = "ds4serve_forced_name";
  const std::string block = render_dsml_tool_calls({ToolCall{"", marker, ""}});
  const size_t at = block.find(marker);
  if (name.empty()) return block.substr(0, at);
  const size_t line_end = block.find('\n', at);
  return block.substr(0, at) + name + block.substr(at + marker.size(), line_end + 1 - at - marker.size());
}

std::string forced_tool_call_text(const ChatRequest& req, bool thinking, bool& complete) {
  complete = false;
  const ToolChoice& choice = req.tool_choice;
  if (req.tools.empty() || (choice.kind != ToolChoiceKind::kRequired && choice.kind != ToolChoiceKind::kNamed)) return "";
  const std::string close_reasoning = thinking ? "</think>" : "";
  if (choice.kind == ToolChoiceKind::kNamed) {
    for (size_t i = 0; i < req.tool_names.size(); ++i) {
      if (req.tool_names[i] != choice.name || req.tool_takes_arguments[i]) continue;
      complete = true;
      return close_reasoning + render_dsml_tool_calls({ToolCall{"", choice.name, ""}});
    }
    return close_reasoning + forced_tool_call_opening(choice.name);
  }
  return close_reasoning + forced_tool_call_opening("");
}

std::optional<ApiError> prepare_chat(const PrepareContext& ctx, const ChatRequest& req, PreparedGeneration& out) {
  if (auto e = check_model(ctx, req.gen.model)) return e;
  if (auto e = check_chat_limits(ctx.limits, req)) return e;
  const bool use_tools = req.tool_choice.kind != ToolChoiceKind::kNone && !req.tools.empty();
  const std::vector<std::string> no_tools;
  ChatRenderOptions options;
  options.effort = req.effort.value_or(ctx.default_effort);
  options.context_tokens = ctx.max_model_len;
  options.replay = ctx.replay;
  const ChatRenderResult rendered = render_chat_prompt(req.messages, use_tools ? req.tools : no_tools, options);
  if (!rendered.ok) return invalid_param("messages", rendered.error);
  // Earlier generated turns as the model sampled them, so a resent history hits the prefix cache.
  out.request.prompt_tokens = tokenize_chat_prompt(ctx.tokenizer, rendered, ctx.replay).ids;
  // The model must call a tool: the prompt continues with the opening of a call (after closing the
  // reasoning, if any), and the response parser reads that text first.
  const std::string forced = forced_tool_call_text(req, rendered.thinking, out.complete_without_generation);
  if (!forced.empty()) {
    out.forced_tokens = ctx.tokenizer.encode(forced, /*parse_special=*/true);
    out.request.prompt_tokens.insert(out.request.prompt_tokens.end(), out.forced_tokens.begin(), out.forced_tokens.end());
  }
  if (auto e = fill_common(ctx, req.gen, out)) return e;
  out.setup.chat = true;
  out.setup.include_reasoning = req.include_reasoning;
  out.stream_options.thinking = rendered.thinking;
  out.stream_options.parse_tool_calls = use_tools;
  return std::nullopt;
}

std::optional<ApiError> prepare_completion(const PrepareContext& ctx, const CompletionRequest& req,
                                           PreparedGeneration& out) {
  if (auto e = check_model(ctx, req.gen.model)) return e;
  if (auto e = check_generation_limits(ctx.limits, req.gen)) return e;
  const Tokenizer& tok = ctx.tokenizer;
  std::vector<int32_t>& tokens = out.request.prompt_tokens;
  if (req.prompt_is_tokens) {
    if (const auto bad = tok.find_invalid_id(req.prompt_tokens))
      return invalid_param("prompt", "'prompt[" + std::to_string(*bad) + "]' = " + std::to_string(req.prompt_tokens[*bad]) +
                                         " is not a token id (vocabulary of " + std::to_string(tok.vocab_size()) + ")");
    tokens = req.prompt_tokens;
  } else {
    if (req.add_special_tokens) tokens.push_back(tok.chat_ids().bos);
    tok.encode_append(req.prompt_text, /*parse_special=*/true, tokens);
    if (tokens.size() >= 2 && tokens[0] == tok.chat_ids().bos && tokens[1] == tokens[0]) tokens.erase(tokens.begin());
  }
  if (tokens.empty()) return invalid_param("prompt", "'prompt' is empty");
  if (auto e = fill_common(ctx, req.gen, out)) return e;
  out.setup.chat = false;
  if (req.echo) out.setup.echo_text = req.prompt_is_tokens ? tok.decode(tokens) : req.prompt_text;
  out.stream_options.thinking = false;
  out.stream_options.stop_in_reasoning = true;  // raw text: stop strings apply everywhere
  out.stream_options.parse_tool_calls = false;
  return std::nullopt;
}

std::optional<ApiError> tokenize_request(const PrepareContext& ctx, const TokenizeRequest& req,
                                         std::vector<int32_t>& tokens) {
  if (auto e = check_model(ctx, req.model)) return e;
  const Tokenizer& tok = ctx.tokenizer;
  tokens.clear();
  if (!req.chat) {
    if (req.add_special_tokens) tokens.push_back(tok.chat_ids().bos);
    tok.encode_append(req.prompt, /*parse_special=*/true, tokens);
    return std::nullopt;
  }
  ChatRenderOptions options;
  options.effort = req.effort.value_or(ctx.default_effort);
  options.context_tokens = ctx.max_model_len;
  options.replay = ctx.replay;
  const ChatRenderResult rendered = render_chat_prompt(req.messages, req.tools, options);
  if (!rendered.ok) return invalid_param("messages", rendered.error);
  tokens = tokenize_chat_prompt(tok, rendered, ctx.replay).ids;
  if (!req.add_generation_prompt) {
    // The renderer always opens the assistant's turn: drop <｜Assistant｜> and its <think> / </think>.
    const ChatTokenIds& ids = tok.chat_ids();
    while (!tokens.empty() && (tokens.back() == ids.think_begin || tokens.back() == ids.think_end)) tokens.pop_back();
    if (!tokens.empty() && tokens.back() == ids.assistant) tokens.pop_back();
  }
  return std::nullopt;
}

}  // namespace ds4::http
