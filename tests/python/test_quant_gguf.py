"""Cross-check of our quant formats (kernels/quant*.cpp) against the independent gguf package.

Through the helper $DS4_BINARY_DIR/tests/quant_probe (tests/tools/quant_probe.cpp):
  (a) blocks written by our quantiser dequantise to bit-identical floats with gguf.quants and
      with our vectorised and reference dequantisers;
  (b) random valid blocks made here (random bytes, random finite f16 scales) likewise;
  (c) our dot_row agrees with an f64 dot of gguf's dequantised weights (|Δ| ≤ 1e-5·Σ|w·x|);
  (d) special rows (zero, constant, huge, tiny) and bad inputs.
"""
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import quants

# name: (gguf type, values per block, bytes per block, byte offsets of f16 scales in a block)
TYPES = {
    "F32": (T.F32, 1, 4, []),
    "F16": (T.F16, 1, 2, []),
    "BF16": (T.BF16, 1, 2, []),
    "Q8_0": (T.Q8_0, 32, 34, [0]),
    "Q2_K": (T.Q2_K, 256, 84, [80, 82]),
    "Q4_K": (T.Q4_K, 256, 144, [0, 2]),
    "IQ2_XXS": (T.IQ2_XXS, 256, 66, [0]),
}
# Relative RMS error of quantise→dequantise on N(0,1) data (same bounds as quant_test.cpp).
RMS_BOUND = {"F32": 0.0, "F16": 3e-4, "BF16": 3e-3, "Q8_0": 0.008, "Q2_K": 0.38, "Q4_K": 0.09,
             "IQ2_XXS": 0.45}


def probe_path() -> Path:
    binary_dir = os.environ.get("DS4_BINARY_DIR")
    assert binary_dir, "DS4_BINARY_DIR must name the build directory"
    path = Path(binary_dir) / "tests" / "quant_probe"
    assert path.exists(), f"{path} is missing: build the quant_probe target"
    return path


def probe(*args, check=True):
    return subprocess.run([str(probe_path()), *map(str, args)], capture_output=True, text=True,
                          check=check)


def gguf_dequantize(name: str, raw: bytes) -> np.ndarray:
    qtype = TYPES[name][0]
    return np.asarray(quants.dequantize(np.frombuffer(raw, dtype=np.uint8), qtype),
                      dtype=np.float32).reshape(-1)


def our_dequantize(name: str, bin_path: Path, tmp_path: Path, ref: bool) -> np.ndarray:
    out = tmp_path / ("ref.f32" if ref else "vec.f32")
    probe("dequantize-ref" if ref else "dequantize", name, bin_path, out)
    return np.fromfile(out, dtype=np.float32)


def assert_bits_equal(ours: np.ndarray, theirs: np.ndarray, what: str):
    assert ours.shape == theirs.shape, what
    diff = np.flatnonzero(ours.view(np.uint32) != theirs.view(np.uint32))
    assert diff.size == 0, (f"{what}: {diff.size} values differ, first at {diff[0]}: "
                            f"ours {ours[diff[0]]!r} gguf {theirs[diff[0]]!r}")


def check_all_dequantizers_agree(name: str, bin_path: Path, tmp_path: Path) -> np.ndarray:
    theirs = gguf_dequantize(name, bin_path.read_bytes())
    for ref in (False, True):
        ours = our_dequantize(name, bin_path, tmp_path, ref)
        assert_bits_equal(ours, theirs, f"{name} {'ref' if ref else 'vectorised'}")
    return theirs


def random_finite_f16(rng: np.random.Generator, count: int) -> np.ndarray:
    """Uniformly random f16 bit patterns excluding inf/NaN (subnormals and 65504 included)."""
    h = rng.integers(0, 1 << 16, size=count, dtype=np.uint32).astype(np.uint16)
    bad = (h & 0x7C00) == 0x7C00
    h[bad] &= 0xBFFF  # clear the top exponent bit: finite
    return h


def random_blocks(name: str, n_blocks: int, seed: int) -> bytes:
    _, _, block_bytes, scale_offsets = TYPES[name]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint16).astype(np.uint8)
    for off in scale_offsets:
        raw[:, off:off + 2] = random_finite_f16(rng, n_blocks).view(np.uint8).reshape(-1, 2)
    if name == "F16":
        raw = random_finite_f16(rng, n_blocks).view(np.uint8).reshape(-1, 2)
    elif name == "BF16":  # finite bf16: exponent byte pattern not all ones
        h = rng.integers(0, 1 << 16, size=n_blocks, dtype=np.uint32).astype(np.uint16)
        h[(h & 0x7F80) == 0x7F80] &= 0xBFFF
        raw = h.view(np.uint8).reshape(-1, 2)
    elif name == "F32":
        raw = rng.standard_normal(n_blocks).astype(np.float32).view(np.uint8).reshape(-1, 4)
    return raw.tobytes()


@pytest.mark.parametrize("name", list(TYPES))
def test_our_blocks_dequantize_identically(name, tmp_path):
    values_per_block = TYPES[name][1]
    n = 256 * 48
    bin_path, src_path = tmp_path / "q.bin", tmp_path / "src.f32"
    probe("quantize", name, n, 1234, bin_path, src_path)
    src = np.fromfile(src_path, dtype=np.float32)
    assert src.size == n and bin_path.stat().st_size == n // values_per_block * TYPES[name][2]
    theirs = check_all_dequantizers_agree(name, bin_path, tmp_path)
    rms = float(np.sqrt(np.sum((theirs.astype(np.float64) - src) ** 2) / np.sum(src.astype(np.float64) ** 2)))
    print(f"{name}: relative RMS error {rms:.6f}")
    assert rms <= RMS_BOUND[name]
    # The plain formats must round exactly like numpy / gguf (round to nearest even).
    if name == "F16":
        assert bin_path.read_bytes() == src.astype(np.float16).tobytes()
    if name == "BF16":
        assert bin_path.read_bytes() == quants.quantize(src, T.BF16).tobytes()


@pytest.mark.parametrize("name", list(TYPES))
def test_random_blocks_dequantize_identically(name, tmp_path):
    bin_path = tmp_path / "r.bin"
    n_blocks = 4096 if TYPES[name][1] > 1 else 1 << 16
    bin_path.write_bytes(random_blocks(name, n_blocks, seed=len(name)))
    values = check_all_dequantizers_agree(name, bin_path, tmp_path)
    assert np.all(np.isfinite(values))


def test_every_f16_and_bf16_bit_pattern(tmp_path):
    patterns = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    for name, nan in (("F16", (patterns & 0x7C00) == 0x7C00), ("BF16", (patterns & 0x7F80) == 0x7F80)):
        keep = patterns[~nan | ((patterns & 0x7FFF) == (0x7C00 if name == "F16" else 0x7F80))]  # inf kept
        bin_path = tmp_path / f"{name}.bin"
        bin_path.write_bytes(keep.tobytes())
        check_all_dequantizers_agree(name, bin_path, tmp_path)


@pytest.mark.parametrize("name", list(TYPES))
def test_dot_matches_f64_dot_of_gguf_values(name, tmp_path):
    n = 256 * 32
    bin_path = tmp_path / "w.bin"
    probe("quantize", name, n, 99, bin_path)
    x = np.random.default_rng(5).standard_normal(n).astype(np.float32)
    x_path = tmp_path / "x.f32"
    x.tofile(x_path)
    w = gguf_dequantize(name, bin_path.read_bytes()).astype(np.float64)
    want = float(np.dot(w, x.astype(np.float64)))
    tol = 1e-5 * float(np.sum(np.abs(w * x)))
    got, got_ref = map(float, probe("dot", name, bin_path, x_path).stdout.split())
    assert abs(got - want) <= tol, (got, want, tol)
    assert abs(got_ref - want) <= tol * 1e-2 + abs(want) * 2 ** -23, (got_ref, want)


@pytest.mark.parametrize("name", list(TYPES))
def test_special_rows(name, tmp_path):
    n = 512
    rng = np.random.default_rng(17)
    rows = {
        "zero": np.zeros(n, np.float32),
        "constant": np.full(n, -0.73, np.float32),
        "huge": (rng.standard_normal(n) * 3000).astype(np.float32),
        "tiny": (rng.standard_normal(n) * 1e-3).astype(np.float32),
        "one_outlier": np.where(np.arange(n) == 300, 50.0, rng.standard_normal(n) * 0.01).astype(np.float32),
    }
    for label, row in rows.items():
        src, bin_path = tmp_path / f"{label}.f32", tmp_path / f"{label}.bin"
        row.tofile(src)
        probe("quantize-f32", name, src, bin_path)
        values = check_all_dequantizers_agree(name, bin_path, tmp_path)
        if label == "zero":
            assert np.all(values == 0)
        assert np.all(np.isfinite(values)), label


def test_bad_inputs_are_reported(tmp_path):
    truncated = tmp_path / "t.bin"
    truncated.write_bytes(b"\x00" * 83)  # one byte short of a Q2_K block
    r = probe("dequantize", "Q2_K", truncated, tmp_path / "o.f32", check=False)
    assert r.returncode == 2 and "not a whole number of Q2_K blocks" in r.stderr
    r = probe("quantize", "Q5_K", 256, 1, tmp_path / "o.bin", check=False)
    assert r.returncode == 2 and "unsupported type 'Q5_K'" in r.stderr
    r = probe("quantize", "Q4_K", 100, 1, tmp_path / "o.bin", check=False)
    assert r.returncode == 2 and "not a whole number of blocks" in r.stderr
