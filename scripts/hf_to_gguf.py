#!/usr/bin/env python3
# Reference HF -> GGUF converter for DeepSeek V4 (the executable form of docs/HF-REFERENCE.md
# sections 2-3). Owns nothing in the engine: it exists so the C++ converter and the CPU forward
# pass can be tested against an independent conversion of the HF goldens (tests/golden/<name>/).
# Invariants: tensor bytes are HF's row-major arrays unchanged (torch [a,b,c] == GGUF [c,b,a]);
# only experts.gate_up_proj is split; every config value our keys cannot express is refused.
# Needs only numpy + gguf (the project .venv), not torch: safetensors is parsed here.
"""Convert an HF DeepseekV4ForCausalLM directory (config.json + *.safetensors) to a GGUF with
our tensor names and deepseek4.* metadata.

  .venv/bin/python scripts/hf_to_gguf.py tests/golden/v4_tiny_a /tmp/v4_tiny_a.gguf [--f16]

Float tensors are written F32 (default) or, with --f16, matrices as F16 (vectors stay F32);
gate.tid2eid is written I32.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np

ARCH = "deepseek4"
SLIDING = "sliding_attention"
CSA = "compressed_sparse_attention"
HCA = "heavily_compressed_attention"

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "F64": np.float64,
              "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8}


class ConversionError(Exception):
    pass


def read_safetensors(path):
    """name -> numpy array (BF16 widened to f32). Raises ConversionError on a malformed file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ConversionError(f"{path}: too short for a safetensors header")
    (hlen,) = struct.unpack("<Q", raw[:8])
    if 8 + hlen > len(raw):
        raise ConversionError(f"{path}: header length {hlen} exceeds the file")
    header = json.loads(raw[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _ST_DTYPES:
            raise ConversionError(f"{path}: tensor {name} has unsupported dtype {dtype}")
        if base + end > len(raw) or begin > end:
            raise ConversionError(f"{path}: tensor {name} data out of bounds")
        buf = raw[base + begin:base + end]
        if dtype == "BF16":
            arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(_ST_DTYPES[dtype]).newbyteorder("<"))
        n = int(np.prod(shape)) if shape else 1
        if arr.size != n:
            raise ConversionError(f"{path}: tensor {name} has {arr.size} values, shape {shape} needs {n}")
        out[name] = arr.reshape(shape)
    return out


def load_hf_dir(hf_dir):
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)
    tensors = {}
    files = sorted(x for x in os.listdir(hf_dir) if x.endswith(".safetensors"))
    if not files:
        raise ConversionError(f"{hf_dir}: no .safetensors file")
    for name in files:
        for k, v in read_safetensors(os.path.join(hf_dir, name)).items():
            if k in tensors:
                raise ConversionError(f"{hf_dir}: tensor {k} appears in two files")
            tensors[k] = v
    return cfg, tensors


# --------------------------------------------------------------------------------------------
# config -> metadata (docs/HF-REFERENCE.md 2)
# --------------------------------------------------------------------------------------------

def _require(cond, msg):
    if not cond:
        raise ConversionError(msg)


def metadata_from_config(cfg):
    """Returns (list of (key, value, kind)) for deepseek4.* and a few general/tokenizer keys."""
    if cfg.get("model_type") != "deepseek_v4":
        raise ConversionError(f"config model_type is {cfg.get('model_type')!r}, expected 'deepseek_v4'")
    n_layer = cfg["num_hidden_layers"]
    head_dim = cfg["head_dim"]
    layer_types = cfg["layer_types"]
    mlp_types = cfg["mlp_layer_types"]
    rates = cfg["compress_rates"]
    _require(len(layer_types) == n_layer and len(mlp_types) == n_layer, "layer_types / mlp_layer_types length != num_hidden_layers")
    _require(cfg.get("scoring_func", "sqrtsoftplus") == "sqrtsoftplus", f"scoring_func {cfg.get('scoring_func')!r} is not sqrtsoftplus")
    _require(cfg.get("hidden_act", "silu") == "silu", f"hidden_act {cfg.get('hidden_act')!r} is not silu")
    _require(not cfg.get("mlp_bias", False), "mlp_bias is true (no shared-expert bias tensors in our format)")
    _require(not cfg.get("tie_word_embeddings", False), "tie_word_embeddings is true")
    _require(cfg.get("n_shared_experts", 1) == 1, f"n_shared_experts {cfg.get('n_shared_experts')} != 1")
    n_hash = 0
    while n_hash < n_layer and mlp_types[n_hash] == "hash_moe":
        n_hash += 1
    _require(all(t == "moe" for t in mlp_types[n_hash:]), f"mlp_layer_types {mlp_types} is not hash_moe* then moe*")
    _require(rates.get(CSA, 4) == 4 or CSA not in layer_types, f"CSA ratio {rates.get(CSA)} != 4")
    _require(HCA not in layer_types or (rates[HCA] != 4 and rates[HCA] >= 2), f"HCA ratio {rates.get(HCA)} must be >= 2 and != 4")
    ratios = []
    for t in layer_types:
        _require(t in (SLIDING, CSA, HCA), f"unknown layer type {t!r}")
        ratios.append(0 if t == SLIDING else int(rates[t]))

    rope = cfg["rope_parameters"]
    main, comp = rope["main"], rope["compress"]
    _require(main.get("rope_type", "default") == "default", f"main rope_type {main.get('rope_type')!r} is not default")
    rope_dim = int(head_dim * main.get("partial_rotary_factor", 1.0))
    comp_dim = int(head_dim * comp.get("partial_rotary_factor", 1.0))
    _require(rope_dim == comp_dim, "main and compress ropes rotate different widths")
    _require(rope.get("truncate", True) is not False, "rope truncate=false is not expressible")
    ctype = comp.get("rope_type", "default")
    if ctype == "yarn":
        _require(comp.get("attention_factor", 1.0) == 1.0, f"compress attention_factor {comp.get('attention_factor')} != 1")
        _require(comp.get("truncate", True) is not False, "compress rope truncate=false is not expressible")
        factor = float(comp["factor"])
        orig = int(comp["original_max_position_embeddings"])
        beta_fast = float(comp.get("beta_fast") or 32.0)
        beta_slow = float(comp.get("beta_slow") or 1.0)
    elif ctype == "default":
        factor, orig, beta_fast, beta_slow = 1.0, int(cfg["max_position_embeddings"]), 32.0, 1.0
    else:
        raise ConversionError(f"compress rope_type {ctype!r} is not expressible")

    u32, f32, boolean = "u32", "f32", "bool"
    kv = [
        ("block_count", n_layer, u32),
        ("embedding_length", cfg["hidden_size"], u32),
        ("vocab_size", cfg["vocab_size"], u32),
        ("context_length", cfg["max_position_embeddings"], u32),
        ("attention.head_count", cfg["num_attention_heads"], u32),
        ("attention.head_count_kv", 1, u32),
        ("attention.key_length", head_dim, u32),
        ("attention.value_length", head_dim, u32),
        ("rope.dimension_count", rope_dim, u32),
        ("attention.q_lora_rank", cfg["q_lora_rank"], u32),
        ("attention.output_lora_rank", cfg["o_lora_rank"], u32),
        ("attention.output_group_count", cfg["o_groups"], u32),
        ("expert_count", cfg["n_routed_experts"], u32),
        ("expert_used_count", cfg["num_experts_per_tok"], u32),
        ("expert_feed_forward_length", cfg["moe_intermediate_size"], u32),
        ("expert_shared_count", 1, u32),
        ("expert_group_count", 0, u32),
        ("expert_group_used_count", 0, u32),
        ("hash_layer_count", n_hash, u32),
        ("attention.sliding_window", cfg["sliding_window"], u32),
        ("attention.indexer.head_count", cfg["index_n_heads"], u32),
        ("attention.indexer.key_length", cfg["index_head_dim"], u32),
        ("attention.indexer.top_k", cfg["index_topk"], u32),
        ("hyper_connection.count", cfg["hc_mult"], u32),
        ("hyper_connection.sinkhorn_iterations", cfg["hc_sinkhorn_iters"], u32),
        ("hyper_connection.epsilon", cfg["hc_eps"], f32),
        ("attention.layer_norm_rms_epsilon", cfg["rms_norm_eps"], f32),
        ("attention.compress_ratios", ratios, "u32[]"),
        ("swiglu_clamp_exp", [float(cfg["swiglu_limit"])] * n_layer, "f32[]"),
        ("rope.freq_base", main["rope_theta"], f32),
        ("attention.compress_rope_freq_base", comp["rope_theta"], f32),
        ("rope.scaling.factor", factor, f32),
        ("rope.scaling.original_context_length", orig, u32),
        ("rope.scaling.yarn_beta_fast", beta_fast, f32),
        ("rope.scaling.yarn_beta_slow", beta_slow, f32),
        ("expert_weights_scale", cfg["routed_scaling_factor"], f32),
        ("expert_weights_norm", True, boolean),
    ]
    return [(f"{ARCH}.{k}", v, kind) for k, v, kind in kv]


# --------------------------------------------------------------------------------------------
# tensors (docs/HF-REFERENCE.md 3)
# --------------------------------------------------------------------------------------------

_LAYER_MAP = {
    "attn_hc.fn": "hc_attn_fn.weight", "attn_hc.base": "hc_attn_base.weight", "attn_hc.scale": "hc_attn_scale.weight",
    "ffn_hc.fn": "hc_ffn_fn.weight", "ffn_hc.base": "hc_ffn_base.weight", "ffn_hc.scale": "hc_ffn_scale.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_a_proj.weight": "attn_q_a.weight",
    "self_attn.q_a_norm.weight": "attn_q_a_norm.weight",
    "self_attn.q_b_proj.weight": "attn_q_b.weight",
    "self_attn.kv_proj.weight": "attn_kv.weight",
    "self_attn.kv_norm.weight": "attn_kv_a_norm.weight",
    "self_attn.sinks": "attn_sinks.weight",
    "self_attn.o_a_proj.weight": "attn_output_a.weight",
    "self_attn.o_b_proj.weight": "attn_output_b.weight",
    "self_attn.compressor.kv_proj.weight": "attn_compressor_kv.weight",
    "self_attn.compressor.gate_proj.weight": "attn_compressor_gate.weight",
    "self_attn.compressor.position_bias": "attn_compressor_ape.weight",
    "self_attn.compressor.kv_norm.weight": "attn_compressor_norm.weight",
    "self_attn.compressor.indexer.kv_proj.weight": "indexer_compressor_kv.weight",
    "self_attn.compressor.indexer.gate_proj.weight": "indexer_compressor_gate.weight",
    "self_attn.compressor.indexer.position_bias": "indexer_compressor_ape.weight",
    "self_attn.compressor.indexer.kv_norm.weight": "indexer_compressor_norm.weight",
    "self_attn.compressor.indexer.q_b_proj.weight": "indexer.attn_q_b.weight",
    "self_attn.compressor.indexer.scorer.weights_proj.weight": "indexer.proj.weight",
    "mlp.gate.weight": "ffn_gate_inp.weight",
    "mlp.gate.e_score_correction_bias": "exp_probs_b.bias",
    "mlp.gate.tid2eid": "ffn_gate_tid2eid.weight",
    "mlp.experts.down_proj": "ffn_down_exps.weight",
    "mlp.shared_experts.gate_proj.weight": "ffn_gate_shexp.weight",
    "mlp.shared_experts.up_proj.weight": "ffn_up_shexp.weight",
    "mlp.shared_experts.down_proj.weight": "ffn_down_shexp.weight",
}

_GLOBAL_MAP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "lm_head.weight": "output.weight",
    "model.norm.weight": "output_norm.weight",
    "model.hc_head.hc_fn": "output_hc_fn.weight",
    "model.hc_head.hc_base": "output_hc_base.weight",
    "model.hc_head.hc_scale": "output_hc_scale.weight",
}


def map_tensors(cfg, hf):
    """Yields (gguf_name, array) in file order; raises on an unknown or missing HF tensor."""
    used = set()
    out = []
    for hf_name, name in _GLOBAL_MAP.items():
        if hf_name not in hf:
            raise ConversionError(f"missing HF tensor {hf_name}")
        out.append((name, hf[hf_name]))
        used.add(hf_name)
    n_vocab, n_expert = cfg["vocab_size"], cfg["n_routed_experts"]
    for il in range(cfg["num_hidden_layers"]):
        prefix = f"model.layers.{il}."
        for hf_name in sorted(k for k in hf if k.startswith(prefix)):
            suffix = hf_name[len(prefix):]
            arr = hf[hf_name]
            used.add(hf_name)
            if suffix == "mlp.experts.gate_up_proj":
                n_e, two_i, _ = arr.shape
                _require(two_i % 2 == 0, f"{hf_name}: odd fused width {two_i}")
                out.append((f"blk.{il}.ffn_gate_exps.weight", arr[:, :two_i // 2, :]))
                out.append((f"blk.{il}.ffn_up_exps.weight", arr[:, two_i // 2:, :]))
                continue
            if suffix not in _LAYER_MAP:
                raise ConversionError(f"HF tensor {hf_name} has no GGUF mapping")
            if suffix == "mlp.gate.tid2eid":
                _require(arr.shape[0] == n_vocab, f"{hf_name}: {arr.shape[0]} rows, vocab is {n_vocab}")
                _require(arr.min() >= 0 and arr.max() < n_expert, f"{hf_name}: expert ids outside [0, {n_expert})")
                arr = arr.astype(np.int32)
            out.append((f"blk.{il}.{_LAYER_MAP[suffix]}", arr))
    extra = sorted(set(hf) - used - {k for k in hf if k.startswith("mtp.")})
    if extra:
        raise ConversionError(f"HF tensors without a mapping: {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    return out


def convert(hf_dir, out_path, f16_matrices=False):
    import gguf

    cfg, hf = load_hf_dir(hf_dir)
    meta = metadata_from_config(cfg)
    tensors = map_tensors(cfg, hf)
    writer = gguf.GGUFWriter(out_path, ARCH)
    writer.add_name(os.path.basename(os.path.normpath(hf_dir)))
    for key, value, kind in meta:
        if kind == "u32":
            writer.add_uint32(key, int(value))
        elif kind == "f32":
            writer.add_float32(key, float(value))
        elif kind == "bool":
            writer.add_bool(key, bool(value))
        elif kind == "u32[]":
            writer.add_key_value(key, [int(v) for v in value], gguf.GGUFValueType.ARRAY,
                                 sub_type=gguf.GGUFValueType.UINT32)
        elif kind == "f32[]":
            writer.add_key_value(key, [float(v) for v in value], gguf.GGUFValueType.ARRAY,
                                 sub_type=gguf.GGUFValueType.FLOAT32)
    writer.add_uint32("tokenizer.ggml.bos_token_id", int(cfg.get("bos_token_id") or 0))
    writer.add_uint32("tokenizer.ggml.eos_token_id", int(cfg.get("eos_token_id") or 1))
    for name, arr in tensors:
        if arr.dtype.kind == "f":
            dtype = np.float16 if (f16_matrices and arr.ndim >= 2) else np.float32
            arr = arr.astype(dtype)
        writer.add_tensor(name, np.ascontiguousarray(arr))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return len(tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hf_dir", help="directory with config.json and *.safetensors")
    ap.add_argument("out", help="GGUF file to write")
    ap.add_argument("--f16", action="store_true", help="write float matrices as F16 (vectors stay F32)")
    args = ap.parse_args()
    try:
        n = convert(args.hf_dir, args.out, args.f16)
    except (ConversionError, KeyError, OSError, ValueError) as e:
        print(f"hf_to_gguf: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {n} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
