// ds4serve-cli: generate text from a GGUF with the CPU reference backend, greedily or with
// sampling, printing the text as it is produced and the prefill / decode speed.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/chat_template.h"
#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"

namespace {

using namespace ds4;
using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: ds4serve-cli [--model FILE] [--prompt TEXT] [-n N] [--temperature T] [--top-p P]\n"
    "                    [--min-p P] [--top-k K] [--seed S] [--threads N] [--raw] [--exact-kv]\n"
    "  --raw       encode the prompt as given (default: one user turn of the chat format)\n"
    "  --exact-kv  disable the model's in-graph FP8/FP4 KV quantisation\n";

struct CliOptions {
  std::string model = DS4_DEMO_MODEL_PATH;
  std::string prompt = "Hello! Tell me about yourself.";
  int n_predict = 32;
  SamplingParams sampling{.temperature = 0.0f};
  int threads = 0;
  bool raw = false;
  bool exact_kv = false;
};

double parse_number(const char* s, const char* what) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s, &end);
  if (end == s || *end || errno) throw LoadError(std::string(what) + ": '" + s + "' is not a number");
  return v;
}

CliOptions parse(int argc, char** argv) {
  CliOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--raw") { o.raw = true; continue; }
    if (a == "--exact-kv") { o.exact_kv = true; continue; }
    if (a == "-h" || a == "--help") { std::fputs(kUsage, stdout); std::exit(0); }
    if (i + 1 >= argc) throw LoadError("option " + a + " needs a value");
    const char* v = argv[++i];
    if (a == "--model" || a == "-m") o.model = v;
    else if (a == "--prompt" || a == "-p") o.prompt = v;
    else if (a == "-n" || a == "--n-predict") o.n_predict = static_cast<int>(parse_number(v, "-n"));
    else if (a == "--temperature" || a == "--temp") o.sampling.temperature = static_cast<float>(parse_number(v, "--temperature"));
    else if (a == "--top-p") o.sampling.top_p = static_cast<float>(parse_number(v, "--top-p"));
    else if (a == "--min-p") o.sampling.min_p = static_cast<float>(parse_number(v, "--min-p"));
    else if (a == "--top-k") o.sampling.top_k = static_cast<int>(parse_number(v, "--top-k"));
    else if (a == "--seed") o.sampling.seed = static_cast<uint64_t>(parse_number(v, "--seed"));
    else if (a == "--threads") o.threads = static_cast<int>(parse_number(v, "--threads"));
    else throw LoadError("unknown option " + a);
  }
  if (o.n_predict < 0) throw LoadError("-n must be >= 0");
  if (o.sampling.top_p <= 0.0f || o.sampling.top_p > 1.0f) throw LoadError("--top-p must be in (0, 1]");
  if (o.sampling.min_p < 0.0f || o.sampling.min_p > 1.0f) throw LoadError("--min-p must be in [0, 1]");
  if (o.sampling.top_k < 0) throw LoadError("--top-k must be >= 0");
  return o;
}

std::vector<int32_t> prompt_tokens(const Tokenizer& tok, const CliOptions& o) {
  if (o.raw) {
    std::vector<int32_t> out{tok.chat_ids().bos};
    tok.encode_append(o.prompt, /*parse_special=*/true, out);
    return out;
  }
  // One non-thinking user turn of the chat format.
  const ChatMessage user{.role = "user", .content = o.prompt};
  const ChatRenderResult r = render_chat_prompt({&user, 1}, {}, {.effort = ReasoningEffort::kNone});
  if (!r.ok) throw LoadError("cannot render the prompt: " + r.error);
  return tok.encode(r.prompt, /*parse_special=*/true);
}

int run(const CliOptions& o) {
  const auto model = load_model(o.model);
  const Tokenizer tok(tokenizer_tables_from_gguf(*model->file));
  CpuBackend backend(model->config, model->weights, ForwardOptions{.quantize_kv = !o.exact_kv}, o.threads);
  ContiguousKv kv(model->config);
  std::vector<int32_t> tokens = prompt_tokens(tok, o);
  if (static_cast<int64_t>(tokens.size()) + o.n_predict > model->config.context_length)
    throw LoadError("prompt (" + std::to_string(tokens.size()) + " tokens) + -n exceeds the context length " +
                    std::to_string(model->config.context_length));
  std::fprintf(stderr, "model %s: %zu prompt tokens\n", model->config.name.c_str(), tokens.size());

  const auto t0 = Clock::now();
  ForwardBatch batch;
  batch.sequences.push_back({&kv, tokens, false});
  ForwardOutput out = backend.forward(batch);
  const auto t1 = Clock::now();
  int generated = 0;
  for (; generated < o.n_predict; ++generated) {
    const int32_t next = sample_token({out.row(0), size_t(out.n_vocab)}, o.sampling, generated);
    if (next == tok.chat_ids().eos) break;
    if (!tok.is_control(next)) std::fwrite(tok.token_bytes(next).data(), 1, tok.token_bytes(next).size(), stdout);
    std::fflush(stdout);
    tokens.push_back(next);
    if (generated + 1 == o.n_predict) { ++generated; break; }
    batch.sequences[0].tokens = std::span<const int32_t>(&tokens.back(), 1);
    out = backend.forward(batch);
  }
  const auto t2 = Clock::now();
  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr, "\nprefill: %zu tokens in %.3f s (%.1f tok/s); decode: %d tokens in %.3f s (%.1f tok/s)\n",
               tokens.size() - generated, prefill_s, (tokens.size() - generated) / prefill_s, generated, decode_s,
               generated > 0 ? generated / decode_s : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ds4serve-cli: error: %s\n", e.what());
    return 1;
  }
}
