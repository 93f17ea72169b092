// Synthetic model generation (see synth.h). Values: counter-based uniform noise per (seed, tensor,
// row), scaled per tensor kind: matrices std 1/sqrt(fan-in), norms ~1, hyper-connection bases
// favouring the identity mix, small biases/sinks; hash tables hold distinct random experts.
// Routed experts in IQ2_XXS / Q2_K / Q4_K are drawn directly as quantised blocks
// (kernels/synth_blocks.h, std 1/sqrt(fan-in)), the same bytes the GPU generator writes.
#include "engine/synth.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <thread>
#include <vector>

#include "engine/gguf.h"
#include "engine/tokenizer_tables.h"
#include "kernels/quant.h"
#include "kernels/splitmix64.h"
#include "kernels/synth_blocks.h"

namespace ds4 {
namespace {

uint64_t name_hash(const std::string& s) {  // FNV-1a 64
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

// Uniform in [-1, 1) from a 64-bit state, advancing it.
float next_uniform(uint64_t& state) {
  state = splitmix64(state);
  return static_cast<float>(state >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

constexpr float kSqrt3 = 1.7320508f;  // uniform[-a, a] has std a / sqrt(3)

// Fills one row of ne0 values for a float tensor.
void fill_row(const TensorSpec& spec, const ModelConfig& c, uint64_t row, uint64_t& rng, float* out) {
  const uint64_t n = spec.dims[0];
  const std::string& name = spec.name;
  auto uniform = [&](float center, float std) {
    for (uint64_t i = 0; i < n; ++i) out[i] = center + std * kSqrt3 * next_uniform(rng);
  };
  if (ends_with(name, "norm.weight")) return uniform(1.0f, 0.05f);
  if (ends_with(name, "_scale.weight")) return uniform(1.0f, 0.05f);
  if (ends_with(name, "hc_attn_base.weight") || ends_with(name, "hc_ffn_base.weight")) {
    // [pre(hc) | post(hc) | comb(hc x hc)]: identity-leaning comb so Sinkhorn starts near a permutation.
    uniform(0.0f, 0.1f);
    const uint64_t hc = c.hc_count;
    for (uint64_t a = 0; a < hc; ++a) out[2 * hc + a * hc + a] += 2.0f;
    return;
  }
  if (ends_with(name, "output_hc_base.weight") || ends_with(name, "hc_head_base.weight")) return uniform(0.0f, 0.1f);
  if (ends_with(name, "attn_sinks.weight")) return uniform(0.0f, 0.5f);
  if (ends_with(name, "exp_probs_b.bias")) return uniform(0.0f, 0.05f);
  if (ends_with(name, "_ape.weight")) return uniform(0.0f, 0.5f);
  if (name == "token_embd.weight") return uniform(0.0f, 1.0f);
  if (ends_with(name, "_fn.weight")) return uniform(0.0f, 0.5f / std::sqrt(float(n)));
  (void)row;
  uniform(0.0f, 1.0f / std::sqrt(float(n)));  // matrices: unit-variance outputs for unit inputs
}

// One row of the hash routing table: n_used distinct experts for token `row`.
void fill_hash_row(const ModelConfig& c, uint64_t& rng, int32_t* out) {
  const uint64_t n_used = c.n_expert_used;
  for (uint64_t k = 0; k < n_used; ++k) {
    int32_t e;
    do {
      rng = splitmix64(rng);
      e = static_cast<int32_t>((rng >> 33) % static_cast<uint64_t>(c.n_expert));
    } while (std::find(out, out + k, e) != out + k);
    out[k] = e;
  }
}

uint64_t row_seed(uint64_t seed, const TensorSpec& spec, uint64_t row) {
  return synth_row_seed(synth_tensor_seed(seed, spec.name), row);
}

// Rows [begin, end) of a direct-block tensor (synth_direct_tensor) into dst.
void encode_direct_rows(const TensorSpec& spec, GgmlType type, uint64_t seed, uint64_t begin, uint64_t end,
                        uint8_t* dst) {
  const uint64_t n = spec.dims[0];
  const uint64_t blocks = n / kQK_K, block_bytes = ggml_type_info(type).block_bytes;
  const SynthBlockScales scales = synth_block_scales(type, synth_direct_std(spec));
  const uint64_t tensor_seed = synth_tensor_seed(seed, spec.name);
  for (uint64_t r = begin; r < end; ++r) {
    const uint64_t rs = synth_row_seed(tensor_seed, r);
    uint8_t* out = dst + (r - begin) * blocks * block_bytes;
    for (uint64_t b = 0; b < blocks; ++b) synth_block(type, scales, synth_block_seed(rs, b), out + b * block_bytes);
  }
}

}  // namespace

// Encodes rows [begin, end) of a tensor into dst (row_bytes each).
void synth_encode_rows(const TensorSpec& spec, const ModelConfig& c, GgmlType type, uint64_t seed, uint64_t begin,
                       uint64_t end, uint8_t* dst) {
  if (synth_direct_tensor(spec, type)) return encode_direct_rows(spec, type, seed, begin, end, dst);
  const uint64_t n = spec.dims[0];
  const uint64_t row_bytes = *ggml_row_bytes(type, n);
  std::vector<float> values(n);
  for (uint64_t r = begin; r < end; ++r) {
    uint64_t rng = row_seed(seed, spec, r);
    uint8_t* out = dst + (r - begin) * row_bytes;
    if (type == GgmlType::I32) {
      fill_hash_row(c, rng, reinterpret_cast<int32_t*>(out));
      continue;
    }
    fill_row(spec, c, r, rng, values.data());
    quantize_row(type, values.data(), out, static_cast<int64_t>(n));
  }
}

namespace {

void write_tokenizer_metadata(const TokenizerTables& t, GgufWriter& w) {
  w.add_metadata("tokenizer.ggml.model", GgufValue::string("gpt2"));
  w.add_metadata("tokenizer.ggml.pre", GgufValue::string("joyai-llm"));
  w.add_metadata("tokenizer.ggml.tokens", GgufValue::string_array(t.tokens));
  std::vector<GgufValue> types;
  types.reserve(t.types.size());
  for (int32_t x : t.types) types.push_back(GgufValue::i32(x));
  w.add_metadata("tokenizer.ggml.token_type", GgufValue::array(GgufValueType::INT32, std::move(types)));
  w.add_metadata("tokenizer.ggml.merges", GgufValue::string_array(t.merges));
  w.add_metadata("tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(t.bos_id)));
  w.add_metadata("tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(t.eos_id)));
  w.add_metadata("tokenizer.ggml.padding_token_id", GgufValue::u32(static_cast<uint32_t>(t.eos_id)));
  w.add_metadata("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));
}

// Streams one tensor's data in chunks, each chunk encoded by all threads.
void write_tensor(const TensorSpec& spec, const ModelConfig& c, GgmlType type, uint64_t seed, int threads,
                  GgufWriter& w) {
  const uint64_t n = spec.dims[0];
  const uint64_t rows = tensor_n_values(spec.dims) / n;
  const uint64_t row_bytes = *ggml_row_bytes(type, n);
  const uint64_t chunk_rows = std::max<uint64_t>(1, (uint64_t(16) << 20) / (n * 4));
  std::vector<uint8_t> buf(chunk_rows * row_bytes);
  for (uint64_t begin = 0; begin < rows; begin += chunk_rows) {
    const uint64_t end = std::min(rows, begin + chunk_rows);
    const uint64_t per = (end - begin + threads - 1) / threads;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      const uint64_t b = begin + t * per, e = std::min(end, b + per);
      if (b >= e) break;
      pool.emplace_back(synth_encode_rows, std::cref(spec), std::cref(c), type, seed, b, e, buf.data() + (b - begin) * row_bytes);
    }
    for (auto& th : pool) th.join();
    w.append_tensor_data({buf.data(), (end - begin) * row_bytes});
  }
}

}  // namespace

uint64_t synth_tensor_seed(uint64_t seed, const std::string& tensor_name) {
  return splitmix64(seed ^ name_hash(tensor_name));
}

bool synth_direct_tensor(const TensorSpec& spec, GgmlType type) {
  return (spec.role == TensorRole::kExpertGateUp || spec.role == TensorRole::kExpertDown) && synth_direct_type(type);
}

double synth_direct_std(const TensorSpec& spec) { return 1.0 / std::sqrt(static_cast<double>(spec.dims[0])); }

void synth_tensor_rows(const TensorSpec& spec, const ModelConfig& config, uint64_t seed, uint64_t row_begin,
                       uint64_t row_end, float* out) {
  for (uint64_t r = row_begin; r < row_end; ++r) {
    uint64_t rng = row_seed(seed, spec, r);
    fill_row(spec, config, r, rng, out + (r - row_begin) * spec.dims[0]);
  }
}

ModelBytes synthesize_model(const SynthOptions& o, const std::string& out_path) {
  validate_config(o.config);
  const auto specs = o.mtp ? mtp_tensor_specs(o.config) : model_tensor_specs(o.config);
  ModelBytes bytes;
  GgufWriter w(out_path, kGgufDefaultAlignment, o.dry_run ? GgufWriteMode::kDryRun : GgufWriteMode::kWrite);
  write_config_metadata(o.config, w);
  if (!o.mtp) {  // the MTP file uses the main model's tokenizer, embedding and head
    const TokenizerTables tok = load_tokenizer_tables(o.tokenizer_dir);
    if (tok.tokens.size() != static_cast<size_t>(o.config.n_vocab))
      throw LoadError("tokenizer has " + std::to_string(tok.tokens.size()) + " tokens but the config's vocab_size is " +
                      std::to_string(o.config.n_vocab));
    write_tokenizer_metadata(tok, w);
  }
  std::vector<GgmlType> types;
  for (const auto& spec : specs) {
    const GgmlType type = tensor_type_for(spec, o.scheme);
    const auto nb = tensor_bytes(spec.dims, type);
    if (!nb)
      throw LoadError("tensor '" + spec.name + "': row width " + std::to_string(spec.dims[0]) + " is not a multiple of the " +
                      std::string(ggml_type_name(type)) + " block size; choose another --quant for this config");
    w.add_tensor(spec.name, type, spec.dims);
    types.push_back(type);
    bytes.category_bytes[static_cast<int>(spec.category)] += *nb;
  }
  bytes.n_tensors = specs.size();
  bytes.header_bytes = w.header_bytes();
  bytes.total_bytes = w.total_bytes();
  if (o.dry_run) return bytes;  // the dry-run writer creates no file
  w.write_header();
  const int threads = o.threads > 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  for (size_t i = 0; i < specs.size(); ++i) write_tensor(specs[i], o.config, types[i], o.seed, threads, w);
  w.finish();
  return bytes;
}

}  // namespace ds4
