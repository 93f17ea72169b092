# HF golden data and the HF -> GGUF converter (issue 3). The logits comparison itself is the C++
# test tests/unit/hf_golden_test.cpp; here: the goldens are well formed, the product converter
# (`ds4serve-model convert-hf`) keeps HF's bytes, agrees tensor for tensor with the independent
# reference converter scripts/hf_to_gguf.py, and refuses what our metadata cannot express.
# Needs only numpy + gguf (no torch); binaries come from DS4_BINARY_DIR.
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

SOURCE_DIR = os.environ.get("DS4_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(SOURCE_DIR, "scripts"))

import hf_goldens  # noqa: E402
import hf_to_gguf  # noqa: E402

GOLDEN_DIR = os.path.join(SOURCE_DIR, "tests", "golden")
GOLDENS = sorted(d for d in os.listdir(GOLDEN_DIR) if os.path.isfile(os.path.join(GOLDEN_DIR, d, "golden.json")))


def golden(name):
    meta = hf_goldens.load_golden_meta(GOLDEN_DIR, name)
    gdir = os.path.join(GOLDEN_DIR, name)
    tokens = np.fromfile(os.path.join(gdir, "tokens.i32"), dtype="<i4")
    logits = hf_goldens.read_logits(os.path.join(gdir, "logits.f32"), meta["n_tokens"], meta["vocab_size"])
    with open(os.path.join(gdir, "config.json")) as f:
        config = json.load(f)
    return meta, config, tokens, logits


def model_tool():
    binary_dir = os.environ.get("DS4_BINARY_DIR")
    assert binary_dir, "DS4_BINARY_DIR is not set (run under ctest or export it)"
    path = os.path.join(binary_dir, "tools", "ds4serve-model")
    assert os.access(path, os.X_OK), f"{path} is not built"
    return path


def convert_cpp(hf_dir, out_path):
    """Runs `ds4serve-model convert-hf`; returns the completed process (not checked)."""
    return subprocess.run([model_tool(), "convert-hf", hf_dir, "-o", out_path], capture_output=True, text=True)


@pytest.fixture(scope="module")
def gguf_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf_goldens")
    for name in GOLDENS:
        r = convert_cpp(os.path.join(GOLDEN_DIR, name), str(out / f"{name}.gguf"))
        assert r.returncode == 0, r.stderr
        hf_to_gguf.convert(os.path.join(GOLDEN_DIR, name), str(out / f"{name}.ref.gguf"))
    return out


def test_there_are_goldens_covering_every_kind():
    kinds, mlp = set(), set()
    for name in GOLDENS:
        meta, *_ = golden(name)
        kinds |= set(meta["layer_types"])
        mlp |= set(meta["mlp_layer_types"])
    assert len(GOLDENS) >= 3
    assert kinds == {"sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention"}
    assert mlp == {"hash_moe", "moe"}


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_is_well_formed(name):
    meta, config, tokens, logits = golden(name)
    assert tokens.shape == (meta["n_tokens"],) and tokens[0] == config["bos_token_id"]
    assert tokens.min() >= 0 and tokens.max() < config["vocab_size"]
    assert np.all(np.isfinite(logits))
    # The goldens must exercise what they claim: indexer selection, closed windows, eviction.
    assert meta["indexer_selecting_rows"] > 0
    assert meta["n_tokens"] > 4 * config["sliding_window"]
    assert meta["hf_full_vs_token_by_token"]["max_rel"] <= hf_goldens.HF_SELF_REL_TOL
    assert meta["hf_full_vs_chunked"]["max_rel"] <= hf_goldens.HF_SELF_REL_TOL
    assert meta["indexer_min_relative_margin"] >= hf_goldens.MIN_RELATIVE_MARGIN


@pytest.mark.parametrize("name", GOLDENS)
def test_converter_keeps_hf_bytes(name, gguf_dir):
    import gguf

    _, hf = hf_to_gguf.load_hf_dir(os.path.join(GOLDEN_DIR, name))
    reader = gguf.GGUFReader(str(gguf_dir / f"{name}.gguf"))
    tensors = {t.name: t for t in reader.tensors}
    n_split = 0
    for hf_name, arr in hf.items():
        if hf_name.endswith("experts.gate_up_proj"):
            layer = hf_name.split(".")[2]
            half = arr.shape[1] // 2
            gate = np.asarray(tensors[f"blk.{layer}.ffn_gate_exps.weight"].data)
            up = np.asarray(tensors[f"blk.{layer}.ffn_up_exps.weight"].data)
            np.testing.assert_array_equal(gate, arr[:, :half, :].astype(np.float32))
            np.testing.assert_array_equal(up, arr[:, half:, :].astype(np.float32))
            n_split += 1
    assert n_split == json.load(open(os.path.join(GOLDEN_DIR, name, "config.json")))["num_hidden_layers"]
    emb = np.asarray(tensors["token_embd.weight"].data)
    np.testing.assert_array_equal(emb, hf["model.embed_tokens.weight"].astype(np.float32))
    hc_fn = tensors["blk.0.hc_attn_fn.weight"]  # GGUF dims are the torch shape reversed
    assert [int(x) for x in hc_fn.shape] == list(hf["model.layers.0.attn_hc.fn"].shape[::-1])


@pytest.mark.parametrize("name", GOLDENS)
def test_converter_agrees_with_reference_converter(name, gguf_dir):
    import gguf

    ours = gguf.GGUFReader(str(gguf_dir / f"{name}.gguf"))
    ref = gguf.GGUFReader(str(gguf_dir / f"{name}.ref.gguf"))
    ours_t = {t.name: t for t in ours.tensors}
    ref_t = {t.name: t for t in ref.tensors}
    assert set(ours_t) == set(ref_t)
    for tname, t in ref_t.items():
        assert [int(x) for x in ours_t[tname].shape] == [int(x) for x in t.shape], tname
        np.testing.assert_array_equal(np.asarray(ours_t[tname].data, dtype=np.float64),
                                      np.asarray(t.data, dtype=np.float64), err_msg=tname)
    for field in ref.fields.values():
        if field.name.startswith("deepseek4."):
            assert field.name in ours.fields, field.name
            np.testing.assert_allclose(np.asarray(ours.fields[field.name].parts[-1], dtype=np.float64),
                                       np.asarray(field.parts[-1], dtype=np.float64), rtol=1e-7, err_msg=field.name)


def edited_golden(tmp_path, edit):
    src = os.path.join(GOLDEN_DIR, "v4_tiny_a")
    dst = tmp_path / "edited"
    shutil.copytree(src, dst)
    with open(dst / "config.json") as f:
        cfg = json.load(f)
    edit(cfg)
    with open(dst / "config.json", "w") as f:
        json.dump(cfg, f)
    return str(dst)


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.update(scoring_func="softmax"), "scoring_func"),
    (lambda c: c.update(compress_rates={"compressed_sparse_attention": 8, "heavily_compressed_attention": 16}), "CSA ratio"),
    (lambda c: c.update(mlp_layer_types=["moe", "hash_moe"] + c["mlp_layer_types"][2:]), "mlp_layer_types"),
    (lambda c: c["rope_parameters"]["compress"].update(attention_factor=1.2), "attention_factor"),
    (lambda c: c.update(n_shared_experts=2), "n_shared_experts"),
])
def test_converter_refuses_what_our_keys_cannot_express(tmp_path, edit, message):
    hf_dir = edited_golden(tmp_path, edit)
    with pytest.raises(hf_to_gguf.ConversionError, match=message):
        hf_to_gguf.convert(hf_dir, str(tmp_path / "out.gguf"))
    r = convert_cpp(hf_dir, str(tmp_path / "out_cpp.gguf"))
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / "out_cpp.gguf")


def test_converter_refuses_out_of_range_hash_table(tmp_path):
    hf_dir = edited_golden(tmp_path, lambda c: c.update(n_routed_experts=1))
    with pytest.raises(hf_to_gguf.ConversionError, match="expert ids"):
        hf_to_gguf.convert(hf_dir, str(tmp_path / "out.gguf"))
    # The C++ converter may stop earlier, at the config check (2 experts used of 1): still an error
    # naming the experts.
    r = convert_cpp(hf_dir, str(tmp_path / "out_cpp.gguf"))
    assert r.returncode != 0 and "expert" in r.stderr, r.stderr
