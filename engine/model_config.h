// ModelConfig: every hyperparameter of a DeepSeek V4 Flash-shaped model, read from the
// `deepseek4.*` GGUF metadata (MODEL.md 4.2) and validated for internal consistency. Presets give
// the real model (`flash`) and small models of the same structure (`tiny`, `small`). Per-layer
// properties (compress ratio, SwiGLU clamp, hash routing) always come from the config, never from
// constants, so test models with other layer patterns go through the same code.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ds4 {

class GgufFile;
class GgufWriter;

enum class AttentionKind { kSliding, kCompressedSparse, kHeavilyCompressed };

struct ModelConfig {
  std::string name = "deepseek-v4-flash";
  int n_layer = 43;
  int n_embd = 4096;  // hidden width
  int n_vocab = 129280;
  int n_head = 64;
  int n_head_kv = 1;
  int head_dim = 512;   // key_length: the shared K=V row width
  int value_dim = 512;  // value_length (must equal head_dim: K and V are one row)
  int rope_dim = 64;    // rotated tail of every head
  int q_lora_rank = 1024;
  int o_lora_rank = 1024;
  int o_groups = 8;
  int n_expert = 256;
  int n_expert_used = 6;
  int expert_ffn = 2048;
  int n_expert_shared = 1;
  int n_hash_layers = 3;
  int sliding_window = 128;
  int indexer_heads = 64;
  int indexer_dim = 128;
  int indexer_top_k = 512;
  int hc_count = 4;
  int hc_sinkhorn_iters = 20;
  float hc_eps = 1e-6f;
  float rms_eps = 1e-6f;
  std::vector<int> compress_ratios;   // [n_layer]: 0 = raw window only, 4 = CSA, other = HCA
  std::vector<float> swiglu_clamp;    // [n_layer]
  float rope_base = 10000.0f;           // plain layers
  float compress_rope_base = 160000.0f; // compressed layers (with YaRN)
  float yarn_factor = 16.0f;
  int yarn_orig_ctx = 65536;
  float yarn_beta_fast = 32.0f;
  float yarn_beta_slow = 1.0f;
  float expert_weights_scale = 1.5f;
  bool expert_weights_norm = true;
  int context_length = 1048576;  // advertised maximum (summary only)

  int compress_ratio(int layer) const { return compress_ratios.at(layer); }
  AttentionKind attention_kind(int layer) const;
  bool is_hash_layer(int layer) const { return layer < n_hash_layers; }
  int nope_dim() const { return head_dim - rope_dim; }
  int q_dim() const { return n_head * head_dim; }          // width of attn_q_b output
  int o_group_width() const { return q_dim() / o_groups; } // head outputs per output group
  int hc_mix_dim() const { return (2 + hc_count) * hc_count; }  // 24 for 4 streams
};

ModelConfig preset_flash();
ModelConfig preset_tiny();
ModelConfig preset_small();
// "flash" | "full" | "tiny" | "small"; throws LoadError for another name.
ModelConfig preset_by_name(const std::string& name);

// Every internal-consistency problem of the config, one line each (empty when valid).
std::vector<std::string> config_problems(const ModelConfig& config);
// Throws LoadError listing every problem.
void validate_config(const ModelConfig& config);
// Where the config differs from the published DeepSeek V4 Flash shape ("key: expected X, found Y").
std::vector<std::string> differences_from_flash(const ModelConfig& config);

// Reads and validates the deepseek4.* metadata. Throws LoadError naming the key and the problem.
ModelConfig config_from_gguf(const GgufFile& file);
// Adds general.* and deepseek4.* metadata for the config to a writer (tokenizer keys not included).
void write_config_metadata(const ModelConfig& config, GgufWriter& writer);

std::string describe_config(const ModelConfig& config);  // multi-line human summary

}  // namespace ds4
