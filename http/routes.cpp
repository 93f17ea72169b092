// The plain (non-generation) routes: /v1/models, /tokenize, /detokenize, /metrics (the registry's
// text plus the preparation pool's gauge), and the Reply helpers. Each is a pure function of the request and the loaded service.
#include "http/generation_prepare.h"
#include "http/json_writer.h"
#include "http/session.h"

namespace ds4::http {

Reply json_reply(std::string body, unsigned status) {
  Reply r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Reply error_reply(const ApiError& error) {
  Reply r = json_reply(error_body(error), static_cast<unsigned>(error.status));
  r.retry_after_seconds = error.retry_after_seconds;
  return r;
}

namespace {

void write_model(JsonWriter& w, ModelService& service) {
  w.begin_object().field("id", service.served_name()).field("object", "model");
  w.field("created", service.created_unix()).field("owned_by", "ds4serve").field("root", service.served_name());
  w.key("parent").null();
  w.field("max_model_len", service.max_model_len()).field("context_length", service.max_model_len());
  w.end_object();
}

PrepareContext prepare_context(ModelService& service) {
  return PrepareContext{service.tokenizer(), service.served_name(), service.max_model_len(), service.default_effort(),
                        &service.replay(), 0};
}

}  // namespace

Reply handle_models(ServerState& state, ModelService& service, const std::string& target) {
  JsonWriter w;
  const std::string prefix = "/v1/models/";
  if (target.rfind(prefix, 0) == 0) {
    const std::string id = target.substr(prefix.size());
    if (id != service.served_name()) return error_reply(model_not_found(id));
    write_model(w, service);
    return json_reply(w.take());
  }
  w.begin_object().field("object", "list").key("data").begin_array();
  write_model(w, service);
  w.end_array().end_object();
  return json_reply(w.take());
}

Reply handle_tokenize(ServerState& state, ModelService& service, const Request& req) {
  TokenizeRequest tr;
  if (auto e = parse_tokenize_request(req.body(), tr)) return error_reply(*e);
  std::vector<int32_t> tokens;
  if (auto e = tokenize_request(prepare_context(service), tr, tokens)) return error_reply(*e);
  JsonWriter w;
  w.begin_object().field("count", static_cast<int64_t>(tokens.size()));
  w.field("max_model_len", service.max_model_len()).key("tokens").begin_array();
  for (int32_t t : tokens) w.number(static_cast<int64_t>(t));
  w.end_array();
  if (tr.return_token_strs) {
    w.key("token_strs").begin_array();
    for (int32_t t : tokens) w.string(service.tokenizer().token_bytes(t));
    w.end_array();
  }
  w.end_object();
  return json_reply(w.take());
}

Reply handle_detokenize(ServerState& state, ModelService& service, const Request& req) {
  DetokenizeRequest dr;
  if (auto e = parse_detokenize_request(req.body(), dr)) return error_reply(*e);
  if (auto e = check_model(prepare_context(service), dr.model)) return error_reply(*e);
  const Tokenizer& tok = service.tokenizer();
  if (const auto bad = tok.find_invalid_id(dr.tokens))
    return error_reply(invalid_param("tokens", "'tokens[" + std::to_string(*bad) + "]' = " +
                                                   std::to_string(dr.tokens[*bad]) + " is not a token id (vocabulary of " +
                                                   std::to_string(tok.vocab_size()) + ")"));
  JsonWriter w;
  w.begin_object().field("prompt", tok.decode(dr.tokens)).end_object();
  return json_reply(w.take());
}

namespace {

std::string escaped_label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace

Reply handle_metrics(ModelService& service, int preparing) {
  Reply r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = service.metrics().serialize();
  // The preparation pool lives in the HTTP server, not in the metrics registry: one more gauge.
  r.body += "# HELP ds4serve_num_requests_preparing Requests being parsed and tokenized, or waiting for a "
            "preparation thread.\n# TYPE ds4serve_num_requests_preparing gauge\n"
            "ds4serve_num_requests_preparing{model_name=\"" + escaped_label_value(service.served_name()) + "\"} " +
            std::to_string(preparing) + "\n";
  return r;
}

}  // namespace ds4::http
