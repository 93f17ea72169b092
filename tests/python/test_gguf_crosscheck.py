"""Cross-check of our GGUF container against the independent `gguf` Python package.

(a) A file written by our GgufWriter (`gguf_probe write-sample`) is read by gguf.GGUFReader, and
    every key, value type, value, tensor type, shape, offset and tensor byte must match what our
    reader reports (`gguf_probe dump`, JSON).
(b) A file written by gguf.GGUFWriter (many metadata types, nested arrays, F32/F16/I32 and raw
    BF16/Q8_0/Q2_K/Q4_K/IQ2_XXS tensors) is read by our reader, which must report exactly what was
    written. The probe is located through DS4_BINARY_DIR (<build>/tests/gguf_probe).
"""
import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as Q
from gguf import GGUFValueType as T


def probe() -> Path:
    bin_dir = os.environ.get("DS4_BINARY_DIR")
    assert bin_dir, "DS4_BINARY_DIR is not set (ctest sets it; export it to run pytest by hand)"
    path = Path(bin_dir) / "tests" / "gguf_probe"
    assert path.is_file(), f"{path} is missing: build the gguf_probe target"
    return path


def run_probe(*args: str) -> str:
    done = subprocess.run([str(probe()), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"gguf_probe {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def dump(path: Path) -> dict:
    return json.loads(run_probe("dump", str(path)))


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


# ------------------------------------------------------------------ our dump, flattened
def dump_type_chain(type_name: str, value) -> list[str]:
    """The type list gguf.GGUFReader records: ARRAY, then the chain of the first item."""
    if type_name != "ARRAY":
        return [type_name]
    items = value["items"]
    if not items:
        return ["ARRAY"]
    return ["ARRAY"] + dump_type_chain(value["element_type"], items[0])


def dump_leaves(type_name: str, value) -> list[tuple[str, object]]:
    """Depth-first (type, value) leaves, the order gguf.GGUFReader's field.data follows."""
    if type_name != "ARRAY":
        return [(type_name, value)]
    out = []
    for item in value["items"]:
        out += dump_leaves(value["element_type"], item)
    return out


def string_bytes(value) -> bytes:
    if isinstance(value, dict):
        return bytes.fromhex(value["bytes_hex"])
    return value.encode("utf-8")


def same_number(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def check_field_matches_dump(field, entry: dict) -> None:
    key = entry["key"]
    assert [t.name for t in field.types] == dump_type_chain(entry["type"], entry["value"]), key
    ours = dump_leaves(entry["type"], entry["value"])
    theirs = [field.parts[i] for i in field.data]
    assert len(theirs) == len(ours), key
    for (type_name, value), part in zip(ours, theirs):
        if type_name == "STRING":
            assert part.tobytes() == string_bytes(value), key
        elif type_name in ("FLOAT32", "FLOAT64"):
            assert same_number(float(part[0]), float(value)), key
        elif type_name == "BOOL":
            assert bool(part[0]) is value, key
        else:
            assert int(part[0]) == value, key


def check_tensor_matches_dump(tensor, entry: dict) -> None:
    name = entry["name"]
    assert tensor.name == name
    assert tensor.tensor_type.name == entry["type"], name
    assert int(tensor.tensor_type) == entry["type_id"], name
    assert [int(d) for d in tensor.shape] == entry["dims"], name
    assert tensor.n_elements == entry["n_values"], name
    assert tensor.n_bytes == entry["n_bytes"], name
    assert tensor.data_offset == entry["file_offset"], name
    data = tensor.data.tobytes()
    assert len(data) == entry["n_bytes"], name
    assert fnv1a64(data) == entry["fnv1a64"], name


# ------------------------------------------------------------------ (a) ours -> gguf-py
@pytest.mark.parametrize("alignment", [32, 64])
def test_gguf_package_reads_our_sample(tmp_path: Path, alignment: int) -> None:
    path = tmp_path / "sample.gguf"
    run_probe("write-sample", str(path), str(alignment))
    ours = dump(path)
    reader = gguf.GGUFReader(path)

    assert ours["version"] == 3 and int(reader.fields["GGUF.version"].parts[0][0]) == 3
    assert ours["alignment"] == alignment == reader.alignment
    assert ours["data_offset"] == reader.data_offset
    assert ours["file_bytes"] == path.stat().st_size

    fields = [f for name, f in reader.fields.items() if not name.startswith("GGUF.")]
    assert [f.name for f in fields] == [e["key"] for e in ours["metadata"]]
    for field, entry in zip(fields, ours["metadata"]):
        check_field_matches_dump(field, entry)

    assert [t.name for t in reader.tensors] == [e["name"] for e in ours["tensors"]]
    for tensor, entry in zip(reader.tensors, ours["tensors"]):
        check_tensor_matches_dump(tensor, entry)

    # Spot checks of content the sample is known to hold (not only "both readers agree").
    assert reader.fields["probe.u64"].contents() == 2**64 - 1
    assert reader.fields["probe.i64"].contents() == -(2**63)
    assert reader.fields["probe.arr_strings"].contents()[0] == "<｜begin▁of▁sentence｜>"
    assert len(reader.fields["tokenizer.ggml.tokens"].contents()) == 1000
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert set(types.values()) == {"F32", "F16", "BF16", "Q8_0", "Q2_K", "Q4_K", "IQ2_XXS", "I32"}
    f32 = next(t for t in reader.tensors if t.name == "probe.f32").data
    assert np.all(np.isfinite(f32)) and np.all(np.abs(f32) <= 1.0)


# ------------------------------------------------------------------ (b) gguf-py -> ours
# (key, value type, value, array element type or None): what the Python writer is asked to write.
PY_METADATA = [
    ("t.u8", T.UINT8, 250, None),
    ("t.i8", T.INT8, -7, None),
    ("t.u16", T.UINT16, 60000, None),
    ("t.i16", T.INT16, -30000, None),
    ("t.u32", T.UINT32, 4294967295, None),
    ("t.i32", T.INT32, -123456789, None),
    ("t.u64", T.UINT64, 2**64 - 2, None),
    ("t.i64", T.INT64, -(2**62), None),
    ("t.f32", T.FLOAT32, 1.0 / 3.0, None),
    ("t.f64", T.FLOAT64, 1.0 / 3.0, None),
    ("t.bool", T.BOOL, True, None),
    ("t.str", T.STRING, "Grüße — 世界 🙂 \"q\" \\ \n", None),
    ("t.arr_u8", T.ARRAY, [1, 2, 255], T.UINT8),
    ("t.arr_i16", T.ARRAY, [-1, 2], T.INT16),
    ("t.arr_u32", T.ARRAY, [4, 128, 4], T.UINT32),
    ("t.arr_i32", T.ARRAY, [-5, 6], T.INT32),
    ("t.arr_u64", T.ARRAY, [2**40, 7], T.UINT64),
    ("t.arr_i64", T.ARRAY, [-(2**40)], T.INT64),
    ("t.arr_f32", T.ARRAY, [0.5, -1.25, 1e-3], T.FLOAT32),
    ("t.arr_f64", T.ARRAY, [math.pi, -1e200], T.FLOAT64),
    ("t.arr_bool", T.ARRAY, [True, False, True], T.BOOL),
    ("t.arr_str", T.ARRAY, ["a", "", "ĠHello", "😀", "日本"], T.STRING),
    ("t.nested_i32", T.ARRAY, [[1, 2], [3], [4, 5, 6]], None),
    ("t.nested_str", T.ARRAY, [["x"], ["y", "zé"]], None),
    ("t.nested_3", T.ARRAY, [[[1.5], [2.5, 3.5]]], None),
]


def py_element_type(value) -> T:
    return T.get_type(value)


def check_dump_value(type_name: str, value, vtype: T, expected, sub_type) -> None:
    assert type_name == vtype.name
    if vtype == T.ARRAY:
        element = sub_type if sub_type is not None else py_element_type(expected[0])
        assert value["element_type"] == element.name
        assert len(value["items"]) == len(expected)
        for item, exp in zip(value["items"], expected):
            check_dump_value(element.name, item, element, exp, None)
    elif vtype == T.FLOAT32:
        assert value == float(np.float32(expected))
    elif vtype == T.STRING:
        assert string_bytes(value) == expected.encode("utf-8")
    else:
        assert value == expected


def py_tensors(rng: np.random.Generator) -> list[tuple[str, np.ndarray, Q | None, list[int]]]:
    """(name, numpy data, raw ggml type or None, GGUF dims ne0-first)."""
    f32 = rng.standard_normal((3, 64)).astype(np.float32)
    out = [
        ("w.f32", f32, None, [64, 3]),
        ("w.f16", rng.standard_normal((2, 2, 32)).astype(np.float16), None, [32, 2, 2]),
        ("w.i32", rng.integers(-1000, 1000, size=(5,), dtype=np.int32), None, [5]),
        ("w.q8_0", gguf.quants.quantize(f32, Q.Q8_0), Q.Q8_0, [64, 3]),
    ]
    # Raw byte tensors: shape (rows, bytes per row); the writer turns it into value dims.
    for name, qtype, ne0, rows in [("w.bf16", Q.BF16, 16, 3), ("w.q2_k", Q.Q2_K, 256, 2),
                                   ("w.q4_k", Q.Q4_K, 512, 2), ("w.iq2_xxs", Q.IQ2_XXS, 256, 4)]:
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(rows, ne0 // block * type_size), dtype=np.uint8)
        out.append((name, raw, qtype, [ne0, rows]))
    return out


@pytest.mark.parametrize("alignment", [32, 256])
def test_our_reader_reads_gguf_package_file(tmp_path: Path, alignment: int) -> None:
    path = tmp_path / "python.gguf"
    writer = gguf.GGUFWriter(path, "crosscheck")
    if alignment != 32:
        writer.add_custom_alignment(alignment)
    for key, vtype, value, sub_type in PY_METADATA:
        writer.add_key_value(key, value, vtype, sub_type=sub_type)
    tensors = py_tensors(np.random.default_rng(1234))
    for name, data, raw_dtype, _ in tensors:
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    ours = dump(path)
    reader = gguf.GGUFReader(path)
    assert ours["version"] == 3
    assert ours["alignment"] == alignment
    assert ours["data_offset"] == reader.data_offset
    entries = {e["key"]: e for e in ours["metadata"]}
    expected_keys = ["general.architecture"] + (["general.alignment"] if alignment != 32 else [])
    expected_keys += [k for k, _, _, _ in PY_METADATA]
    assert [e["key"] for e in ours["metadata"]] == expected_keys
    assert entries["general.architecture"]["value"] == "crosscheck"
    for key, vtype, value, sub_type in PY_METADATA:
        entry = entries[key]
        check_dump_value(entry["type"], entry["value"], vtype, value, sub_type)

    assert [e["name"] for e in ours["tensors"]] == [t[0] for t in tensors]
    for (name, data, raw_dtype, dims), entry, theirs in zip(tensors, ours["tensors"], reader.tensors):
        assert entry["dims"] == dims, name
        expected_type = raw_dtype.name if raw_dtype is not None else {
            np.float32: "F32", np.float16: "F16", np.int32: "I32"}[data.dtype.type]
        assert entry["type"] == expected_type, name
        assert entry["n_bytes"] == data.nbytes, name
        assert entry["offset"] % alignment == 0, name
        assert entry["fnv1a64"] == fnv1a64(data.tobytes()), name
        assert entry["file_offset"] == theirs.data_offset, name


def test_probe_rejects_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.gguf"
    run_probe("write-sample", str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1])
    done = subprocess.run([str(probe()), "dump", str(path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "extends past end of file" in done.stderr
