// ds4serve-model: the model-file tool. `synth` writes synthetic DeepSeek V4 Flash-shaped GGUFs
// (tiny/small/full, any quant scheme; --dry-run lists the layout without writing), `info` prints a
// file's config, tensor count, bytes per category and validation result.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "engine/gguf.h"
#include "engine/hf_convert.h"
#include "engine/model_info.h"
#include "engine/synth.h"
#include "engine/tokenizer_tables.h"
#include "engine/weights.h"

namespace {

using namespace ds4;

constexpr const char* kUsage =
    "usage:\n"
    "  ds4serve-model synth --preset {tiny,small,full} --quant {q2,q4,q8_0,f16,f32} [--seed N]\n"
    "                       -o FILE [--dry-run] [--list] [--mtp] [--threads N] [--tokenizer DIR]\n"
    "    --mtp: write the MTP draft module (mtp.0.* tensors) for that preset instead of the model\n"
    "  ds4serve-model info FILE [--tensors]\n"
    "  ds4serve-model convert-hf DIR -o FILE [--type {f32,f16}]   (HF DeepseekV4 config.json + model.safetensors)\n";

struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;  // --key value
  std::map<std::string, bool> flags;           // --flag
};

// Parses argv after the subcommand; `flags` lists the options that take no value.
Args parse_args(int argc, char** argv, const std::vector<std::string>& flags) {
  Args a;
  for (int i = 0; i < argc; ++i) {
    std::string s = argv[i];
    if (s.rfind("--", 0) == 0 || s == "-o") {
      if (std::find(flags.begin(), flags.end(), s) != flags.end()) {
        a.flags[s] = true;
        continue;
      }
      if (i + 1 >= argc) throw LoadError("option " + s + " needs a value");
      a.options[s] = argv[++i];
    } else {
      a.positional.push_back(s);
    }
  }
  return a;
}

std::string option(const Args& a, const std::string& key, const std::string& fallback = "") {
  auto it = a.options.find(key);
  return it == a.options.end() ? fallback : it->second;
}

uint64_t parse_u64(const std::string& s, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (s.empty() || *end || errno || s[0] == '-') throw LoadError(what + ": '" + s + "' is not a non-negative integer");
  return v;
}

void check_known_options(const Args& a, const std::vector<std::string>& known) {
  for (const auto& [k, v] : a.options)
    if (std::find(known.begin(), known.end(), k) == known.end()) throw LoadError("unknown option " + k);
  for (const auto& [k, v] : a.flags)
    if (std::find(known.begin(), known.end(), k) == known.end()) throw LoadError("unknown option " + k);
}

void print_tensor_list(const std::vector<TensorSpec>& specs, QuantScheme scheme) {
  for (const auto& spec : specs) {
    const GgmlType type = tensor_type_for(spec, scheme);
    std::string dims;
    for (size_t i = 0; i < spec.dims.size(); ++i) dims += (i ? "," : "") + std::to_string(spec.dims[i]);
    const auto nb = tensor_bytes(spec.dims, type);
    std::printf("  %-40s %-8s [%s] %llu B\n", spec.name.c_str(), std::string(ggml_type_name(type)).c_str(), dims.c_str(),
                static_cast<unsigned long long>(nb.value_or(0)));
  }
}

int cmd_synth(int argc, char** argv) {
  const Args a = parse_args(argc, argv, {"--dry-run", "--list", "--mtp"});
  check_known_options(a, {"--preset", "--quant", "--seed", "-o", "--dry-run", "--list", "--threads", "--tokenizer", "--mtp"});
  if (!a.positional.empty()) throw LoadError("unexpected argument '" + a.positional[0] + "'");
  SynthOptions o;
  o.config = preset_by_name(option(a, "--preset", "tiny"));
  const std::string quant = option(a, "--quant", "q2");
  const auto scheme = quant_scheme_from_name(quant);
  if (!scheme) throw LoadError("unknown --quant '" + quant + "' (expected q2, q4, q8_0, f16 or f32)");
  o.scheme = *scheme;
  o.seed = parse_u64(option(a, "--seed", "1"), "--seed");
  o.threads = static_cast<int>(parse_u64(option(a, "--threads", "0"), "--threads"));
  o.tokenizer_dir = option(a, "--tokenizer", DS4_DEFAULT_TOKENIZER_DIR);
  o.dry_run = a.flags.count("--dry-run") > 0;
  o.mtp = a.flags.count("--mtp") > 0;
  const std::string out = option(a, "-o");
  if (out.empty() && !o.dry_run) throw LoadError("synth needs -o FILE (or --dry-run)");

  if (a.flags.count("--list") || o.dry_run) print_tensor_list(o.mtp ? mtp_tensor_specs(o.config) : model_tensor_specs(o.config), o.scheme);
  const auto t0 = std::chrono::steady_clock::now();
  const ModelBytes bytes = synthesize_model(o, out);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s %s %s: %llu tensors, %.2f s\n", o.dry_run ? "dry run" : "wrote", o.config.name.c_str(),
              quant_scheme_name(o.scheme), static_cast<unsigned long long>(bytes.n_tensors), s);
  std::printf("%s", format_model_bytes(bytes).c_str());
  return 0;
}

int cmd_info(int argc, char** argv) {
  const Args a = parse_args(argc, argv, {"--tensors"});
  check_known_options(a, {"--tensors"});
  if (a.positional.size() != 1) throw LoadError("info needs exactly one FILE");
  const auto file = GgufFile::open(a.positional[0]);
  std::printf("file: %s (GGUF v%u, %zu metadata keys, %zu tensors)\n", file->path().c_str(), file->version(),
              file->metadata().size(), file->tensors().size());
  const ModelConfig config = config_from_gguf(*file);
  std::printf("%s", describe_config(config).c_str());
  std::printf("bytes per category:\n%s", format_model_bytes(measure_model_bytes(*file, config)).c_str());
  const auto scheme = matching_scheme(*file, config);
  std::printf("tensor types: %s\n", scheme ? quant_scheme_name(*scheme) : "mixed (no standard scheme)");
  const auto diffs = differences_from_flash(config);
  if (diffs.empty()) std::printf("shape: the published DeepSeek V4 Flash layout\n");
  else std::printf("shape: differs from DeepSeek V4 Flash in %zu keys (a test-size model)\n", diffs.size());
  const TokenizerTables tok = tokenizer_tables_from_gguf(*file);
  if (tok.tokens.size() != static_cast<size_t>(config.n_vocab))
    throw LoadError("tokenizer has " + std::to_string(tok.tokens.size()) + " tokens, vocab_size is " +
                    std::to_string(config.n_vocab));
  std::printf("tokenizer: %zu tokens, %zu merges\n", tok.tokens.size(), tok.merges.size());
  const Weights w = bind_weights(*file, config);
  for (const auto& name : w.unused_tensors) std::printf("note: unused tensor '%s'\n", name.c_str());
  if (a.flags.count("--tensors"))
    for (const auto& t : file->tensors())
      std::printf("  %-40s %-8s %llu B\n", t.name.c_str(), std::string(ggml_type_name(t.type)).c_str(),
                  static_cast<unsigned long long>(t.n_bytes));
  std::printf("validation: OK\n");
  return 0;
}

int cmd_convert_hf(int argc, char** argv) {
  const Args a = parse_args(argc, argv, {});
  check_known_options(a, {"-o", "--type"});
  if (a.positional.size() != 1) throw LoadError("convert-hf needs exactly one checkpoint DIR");
  const std::string out = option(a, "-o");
  if (out.empty()) throw LoadError("convert-hf needs -o FILE");
  const std::string type = option(a, "--type", "f32");
  if (type != "f32" && type != "f16") throw LoadError("--type must be f32 or f16");
  convert_hf_checkpoint(a.positional[0], out, type == "f32" ? GgmlType::F32 : GgmlType::F16);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "synth") return cmd_synth(argc - 2, argv + 2);
    if (cmd == "info") return cmd_info(argc - 2, argv + 2);
    if (cmd == "convert-hf") return cmd_convert_hf(argc - 2, argv + 2);
    std::fprintf(stderr, "ds4serve-model: unknown command '%s'\n%s", cmd.c_str(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ds4serve-model %s: error: %s\n", cmd.c_str(), e.what());
    return 1;
  }
}
