// Parsing of the generation fields shared by chat and completions, and of the /v1/completions,
// /tokenize and /detokenize bodies (see openai_request.h). Chat messages and tools are in
// openai_chat_request.cpp.
#include <limits>

#include "http/json_fields.h"
#include "http/openai_chat_parts.h"
#include "http/openai_request.h"

namespace ds4::http {

using simdjson::dom::element_type;

namespace {

constexpr int64_t kMaxSeed = std::numeric_limits<int64_t>::max();

MaybeError read_stream_options(const Element& v, GenerationFields& g) {
  if (is_null(v)) return std::nullopt;
  if (v.type() != element_type::OBJECT) return wrong_type("stream_options", "an object", v);
  for (auto [k, item] : object_of(v)) {
    std::optional<bool> b;
    if (k == "include_usage") {
      if (auto e = read_bool(item, "stream_options.include_usage", b)) return e;
      g.include_usage = b.value_or(false);
    } else if (k == "continuous_usage_stats") {
      if (auto e = read_bool(item, "stream_options.continuous_usage_stats", b)) return e;
      g.continuous_usage = b.value_or(false);
    }
  }
  return std::nullopt;
}

// Parameters accepted only at their neutral value (this server does not implement them).
MaybeError read_neutral(std::string_view key, const Element& v, bool& handled) {
  handled = true;
  const std::string k(key);
  std::optional<double> d;
  std::optional<int64_t> i;
  if (k == "frequency_penalty" || k == "presence_penalty") {
    if (auto e = read_number(v, k, -2.0, 2.0, false, d)) return e;
    if (d && *d != 0.0) return unsupported(k, "'" + k + "' is not supported by this server (only 0)");
  } else if (k == "repetition_penalty") {
    if (auto e = read_number(v, k, 0.0, 100.0, true, d)) return e;
    if (d && *d != 1.0) return unsupported(k, "'repetition_penalty' is not supported by this server (only 1)");
  } else if (k == "n" || k == "best_of") {
    if (auto e = read_int(v, k, 1, 128, i)) return e;
    if (i && *i != 1) return unsupported(k, "'" + k + "' must be 1: this server returns one choice per request");
  } else if (k == "logit_bias") {
    if (is_null(v)) return std::nullopt;
    if (v.type() != element_type::OBJECT) return wrong_type(k, "an object", v);
    if (v.get_object().value_unsafe().size() != 0) return unsupported(k, "'logit_bias' is not supported by this server");
  } else if (k == "response_format") {
    if (is_null(v)) return std::nullopt;
    if (v.type() != element_type::OBJECT) return wrong_type(k, "an object", v);
    std::string_view type;
    if (v["type"].get(type) || type != "text")
      return unsupported(k, "'response_format' other than {\"type\": \"text\"} is not supported by this server");
  } else if (k == "min_tokens") {
    if (auto e = read_int(v, k, 0, kMaxSeed, i)) return e;
    // Checked against ignore_eos once every field is read (see finish_generation_fields).
    handled = true;
  } else if (k == "user" || k == "cache_prompt" || k == "skip_special_tokens" || k == "parallel_tool_calls" ||
             k == "spaces_between_special_tokens" || k == "request_id") {
    // Known and without effect here: prefix caching is always on, control tokens are never shown.
  } else {
    handled = false;
  }
  return std::nullopt;
}

}  // namespace

MaybeError read_generation_field(std::string_view key, const Element& v, GenerationFields& g, bool& handled) {
  handled = true;
  const std::string k(key);
  std::optional<double> d;
  std::optional<int64_t> i;
  std::optional<bool> b;
  std::optional<std::string> s;
  if (k == "model") {
    if (auto e = read_string(v, k, s)) return e;
    g.model = s.value_or("");
  } else if (k == "temperature") {
    if (auto e = read_number(v, k, 0.0, 2.0, false, d)) return e;
    if (d) g.sampling.temperature = static_cast<float>(*d);
  } else if (k == "top_p") {
    if (auto e = read_number(v, k, 0.0, 1.0, true, d)) return e;
    if (d) g.sampling.top_p = static_cast<float>(*d);
  } else if (k == "top_k") {
    if (auto e = read_int(v, k, -1, std::numeric_limits<int32_t>::max(), i)) return e;
    if (i) g.sampling.top_k = *i < 0 ? 0 : static_cast<int>(*i);
  } else if (k == "min_p") {
    if (auto e = read_number(v, k, 0.0, 1.0, false, d)) return e;
    if (d) g.sampling.min_p = static_cast<float>(*d);
  } else if (k == "seed") {
    if (auto e = read_int(v, k, std::numeric_limits<int64_t>::min(), kMaxSeed, i)) return e;
    if (i) g.sampling.seed = static_cast<uint64_t>(*i), g.seed_given = true;
  } else if (k == "max_tokens" || k == "max_completion_tokens") {
    if (auto e = read_int(v, k, 1, kMaxSeed, i)) return e;
    if (i && (k == "max_completion_tokens" || !g.max_tokens)) g.max_tokens = *i, g.max_tokens_name = k;
  } else if (k == "stop") {
    if (auto e = read_string_or_list(v, k, g.stop)) return e;  // counts and sizes: request_limits.h
  } else if (k == "stop_token_ids") {
    if (is_null(v)) return std::nullopt;
    if (auto e = read_token_ids(v, k, g.stop_token_ids)) return e;
  } else if (k == "ignore_eos") {
    if (auto e = read_bool(v, k, b)) return e;
    g.ignore_eos = b.value_or(false);
  } else if (k == "stream") {
    if (auto e = read_bool(v, k, b)) return e;
    g.stream = b.value_or(false);
  } else if (k == "stream_options") {
    return read_stream_options(v, g);
  } else if (k == "return_token_ids") {
    if (auto e = read_bool(v, k, b)) return e;
    g.return_token_ids = b.value_or(false);
  } else if (k == "priority") {
    if (auto e = read_int(v, k, -1000000, 1000000, i)) return e;
    g.priority = static_cast<int>(i.value_or(0));
  } else {
    return read_neutral(key, v, handled);
  }
  return std::nullopt;
}

MaybeError finish_generation_fields(const simdjson::dom::object& obj, GenerationFields& g) {
  Element v;
  if (!obj["stream_options"].get(v) && !is_null(v) && !g.stream)
    return invalid_param("stream_options", "'stream_options' is only allowed when 'stream' is true");
  int64_t min_tokens = 0;
  if (!obj["min_tokens"].get(v) && !is_null(v) && !v.get(min_tokens) && min_tokens > 0) {
    if (!g.ignore_eos)
      return unsupported("min_tokens", "'min_tokens' > 0 is only supported together with 'ignore_eos': true");
    if (g.max_tokens && min_tokens > *g.max_tokens)
      return invalid_param("min_tokens", "'min_tokens' must not exceed 'max_tokens'");
  }
  return std::nullopt;
}

namespace {

MaybeError read_prompt(const Element& v, CompletionRequest& out) {
  const std::string p = "prompt";
  if (v.type() == element_type::STRING) {
    out.prompt_text = std::string(v.get_string().value_unsafe());
    return std::nullopt;
  }
  if (v.type() != element_type::ARRAY) return wrong_type(p, "a string, a list of token ids, or a list of one of those", v);
  auto items = v.get_array().value_unsafe();
  if (items.size() == 0) return invalid_param(p, "'prompt' must not be an empty list");
  const Element first = items.at(0).value_unsafe();
  const bool nested = first.type() == element_type::STRING || first.type() == element_type::ARRAY;
  if (nested && items.size() != 1)
    return unsupported(p, "Batched prompts (" + std::to_string(items.size()) +
                              " prompts in one request) are not supported; send one request per prompt");
  const Element one = nested ? first : v;
  if (one.type() == element_type::STRING) {
    out.prompt_text = std::string(one.get_string().value_unsafe());
    return std::nullopt;
  }
  out.prompt_is_tokens = true;
  if (auto e = read_token_ids(one, nested ? "prompt[0]" : p, out.prompt_tokens)) return e;
  if (out.prompt_tokens.empty()) return invalid_param(p, "'prompt' must not be an empty list of token ids");
  return std::nullopt;
}

}  // namespace

MaybeError parse_completion_request(std::string_view body, CompletionRequest& out) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (auto e = parse_object(parser, body, obj)) return e;
  bool have_prompt = false;
  for (auto [key, v] : obj) {
    bool handled = false;
    if (key == "prompt") {
      if (is_null(v)) continue;
      if (auto e = read_prompt(v, out)) return e;
      have_prompt = true;
    } else if (key == "logprobs") {
      std::optional<int64_t> n;
      if (auto e = read_int(v, "logprobs", 0, kMaxTopLogprobsParam, n)) return e;
      out.gen.logprobs = n.has_value();
      out.gen.top_logprobs = static_cast<int>(n.value_or(0));
    } else if (key == "echo") {
      std::optional<bool> b;
      if (auto e = read_bool(v, "echo", b)) return e;
      out.echo = b.value_or(false);
    } else if (key == "add_special_tokens") {
      std::optional<bool> b;
      if (auto e = read_bool(v, "add_special_tokens", b)) return e;
      out.add_special_tokens = b.value_or(true);
    } else if (key == "suffix") {
      std::optional<std::string> s;
      if (auto e = read_string(v, "suffix", s)) return e;
      if (s && !s->empty()) return unsupported("suffix", "'suffix' is not supported by this server");
    } else {
      if (auto e = read_generation_field(key, v, out.gen, handled)) return e;
      if (!handled) out.gen.ignored_fields.emplace_back(key);
    }
  }
  if (!have_prompt) return invalid_param("prompt", "'prompt' is required");
  return finish_generation_fields(obj, out.gen);
}

MaybeError parse_tokenize_request(std::string_view body, TokenizeRequest& out) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (auto e = parse_object(parser, body, obj)) return e;
  bool have_prompt = false;
  for (auto [key, v] : obj) {
    std::optional<std::string> s;
    std::optional<bool> b;
    if (key == "model") {
      if (auto e = read_string(v, "model", s)) return e;
      out.model = s.value_or("");
    } else if (key == "prompt") {
      if (auto e = read_string(v, "prompt", s)) return e;
      have_prompt = s.has_value();
      out.prompt = s.value_or("");
    } else if (key == "messages") {
      if (auto e = read_messages(v, out.messages)) return e;
      out.chat = true;
    } else if (key == "tools") {
      std::vector<std::string> names;
      std::vector<bool> takes_arguments;
      if (auto e = read_tools(v, out.tools, names, takes_arguments)) return e;
    } else if (key == "add_special_tokens" || key == "add_generation_prompt" || key == "return_token_strs") {
      if (auto e = read_bool(v, std::string(key), b)) return e;
      if (key == "add_special_tokens") out.add_special_tokens = b.value_or(true);
      else if (key == "add_generation_prompt") out.add_generation_prompt = b.value_or(true);
      else out.return_token_strs = b.value_or(false);
    } else {
      bool handled = false;
      if (auto e = read_reasoning_switch(key, v, out.effort, nullptr, handled)) return e;
    }
  }
  if (out.chat == have_prompt) return invalid_param("prompt", "Give exactly one of 'prompt' and 'messages'");
  return std::nullopt;
}

MaybeError parse_detokenize_request(std::string_view body, DetokenizeRequest& out) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (auto e = parse_object(parser, body, obj)) return e;
  bool have_tokens = false;
  for (auto [key, v] : obj) {
    if (key == "model") {
      std::optional<std::string> s;
      if (auto e = read_string(v, "model", s)) return e;
      out.model = s.value_or("");
    } else if (key == "tokens") {
      if (auto e = read_token_ids(v, "tokens", out.tokens)) return e;
      have_tokens = true;
    }
  }
  if (!have_tokens) return invalid_param("tokens", "'tokens' is required");
  return std::nullopt;
}

}  // namespace ds4::http
