"""Faults (issue #12): a model file that is missing, empty, not GGUF, truncated or corrupt at start
(exit 1 with a message naming the file, never a crash); a model file deleted while serving; a KV
pool too small for the sequences running at once (preemption mid-generation, every request still
completes exactly); a request that reaches the context limit mid-stream (finish_reason "length" at
the limit); SIGTERM under load (admitted requests finish, new connections are refused, exit 0); and
SIGKILL under load followed by a restart on the same port (clean start: counters at zero, serves).
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from ds4serve_harness import DEMO_MODEL, SERVER, Ds4Server, metric, need_binaries, parse_metrics
from hardening_util import CHAT, assert_healthy, chat_body, kv_idle


def start_fails(model_path, *extra):
    need_binaries()
    p = subprocess.run([str(SERVER), "--model", str(model_path), "--port", "0", "--threads", "1", *extra],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, f"exit {p.returncode}:\n{p.stderr[-2000:]}"
    assert "error:" in p.stderr
    return p.stderr


def test_model_missing_empty_or_not_gguf(tmp_path):
    assert "missing.gguf" in start_fails(tmp_path / "missing.gguf")
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    assert "empty.gguf" in start_fails(empty)
    noise = tmp_path / "noise.gguf"
    noise.write_bytes(os.urandom(1 << 20))
    assert "noise.gguf" in start_fails(noise)
    assert str(tmp_path) in start_fails(tmp_path)  # a directory


def test_model_truncated_or_with_a_corrupt_header(tmp_path):
    data = DEMO_MODEL.read_bytes()
    for name, blob in [("half.gguf", data[:len(data) // 2]), ("head.gguf", data[:4096]),
                       ("no_tail.gguf", data[:-1]), ("magic.gguf", b"GGUX" + data[4:]),
                       ("counts.gguf", data[:8] + b"\xff" * 16 + data[24:])]:
        path = tmp_path / name
        path.write_bytes(blob)
        err = start_fails(path)
        assert name in err, err[-500:]


def test_model_deleted_while_serving(tmp_path):
    copy = tmp_path / "model-copy.gguf"
    shutil.copyfile(DEMO_MODEL, copy)
    with Ds4Server("--model", copy, log_dir=tmp_path) as s:
        copy.unlink()  # the weights are mapped: the inode lives on until the server exits
        assert_healthy(s)


def test_nan_weights_do_not_crash_the_server(tmp_path):
    # A model whose final norm is NaN (a corrupt file whose structure is intact): every logit is
    # NaN. Sampled and greedy requests must still end normally (token 0) and the server stay up;
    # before the sampler fix a temperature draw read past the end of an empty candidate list.
    import gguf
    import numpy as np
    path = tmp_path / "nan.gguf"
    shutil.copyfile(DEMO_MODEL, path)
    t = next(t for t in gguf.GGUFReader(DEMO_MODEL).tensors if t.name == "output_norm.weight")
    assert t.tensor_type == gguf.GGMLQuantizationType.F32
    with open(path, "r+b") as f:
        f.seek(int(t.data_offset))
        f.write(np.full(int(t.n_bytes) // 4, np.nan, dtype=np.float32).tobytes())
    with Ds4Server("--model", path, log_dir=tmp_path) as s:
        for temperature in (0.7, 0.0):
            for stream in (False, True):
                status, _, raw = s.request("POST", CHAT, json.dumps(chat_body(max_tokens=3, temperature=temperature,
                                                                              stream=stream)).encode())
                assert status == 200, raw
                assert (b"data: [DONE]" in raw) if stream else json.loads(raw)["usage"]["completion_tokens"] == 3
        assert_healthy(s)


def test_kv_pool_too_small_for_the_batch_preempts_and_completes(tmp_path):
    # 0.0016 GiB holds 3 blocks of 256 positions for the demo model; 3 sequences of a ~210-token
    # prompt each fit one block, and each needs a second one mid-generation: preemption.
    with Ds4Server("--kv-memory", 0.0016, "--max-num-seqs", 3, log_dir=tmp_path) as s:
        blocks = int(re.search(r"KV pool: .*?, (\d+) blocks of 256", s.log_text()).group(1))
        assert blocks < 6, f"the pool holds {blocks} blocks: too many to force preemption"
        results = [None] * 3

        def run(i):
            results[i] = s.post_json(CHAT, chat_body(content=f"tale {i} " + "word " * 200, max_tokens=100,
                                                     ignore_eos=True))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        for status, data in results:
            assert status == 200, data
            assert data["usage"]["completion_tokens"] == 100 and data["choices"][0]["finish_reason"] == "length"
        samples = kv_idle(s)
        assert metric(samples, "ds4serve_num_preemptions_total") > 0, "no preemption happened"


def read_sse(response):
    events = []
    for raw in response:
        line = raw.decode().strip()
        if line.startswith("data: "):
            events.append(line[6:])
            if line == "data: [DONE]":
                break
    return events


def test_context_limit_reached_mid_stream(tmp_path):
    ctx = 200
    with Ds4Server("--ctx", ctx, log_dir=tmp_path) as s:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=120)
        body = chat_body(content="count with me", max_tokens=None, stream=True, ignore_eos=True,
                         stream_options={"include_usage": True})
        del body["max_tokens"]  # the rest of the context
        conn.request("POST", CHAT, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200
        events = read_sse(r)
        assert events[-1] == "[DONE]"
        usage = json.loads(events[-2])["usage"]
        assert usage["prompt_tokens"] + usage["completion_tokens"] == ctx
        finishes = [c["finish_reason"] for e in events[:-2] for c in json.loads(e)["choices"] if c["finish_reason"]]
        assert finishes == ["length"]
        status, data = s.post_json(CHAT, chat_body(max_tokens=ctx))
        assert status == 400 and data["error"]["code"] == "context_length_exceeded"
        assert_healthy(s)


def stream_request(port, i, max_tokens, out):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        conn.request("POST", CHAT, json.dumps(chat_body(content=f"request {i}", max_tokens=max_tokens, stream=True,
                                                        ignore_eos=True, stream_options={"include_usage": True})),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        out[i] = (r.status, read_sse(r) if r.status == 200 else r.read())
    except OSError as e:
        out[i] = ("error", repr(e))


def test_sigterm_under_load_drains(tmp_path):
    s = Ds4Server("--max-num-seqs", 4, "--drain-timeout", 120, log_dir=tmp_path).start()
    n, out = 10, {}
    threads = [threading.Thread(target=stream_request, args=(s.port, i, 24, out)) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.time() + 60  # wait until all 10 are in the engine (4 running, 6 waiting)
    while time.time() < deadline:
        m = parse_metrics(s.metrics())
        if metric(m, "ds4serve_num_requests_running") + metric(m, "ds4serve_num_requests_waiting") >= n:
            break
        time.sleep(0.05)
    s.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=5).close()
    for t in threads:
        t.join(timeout=300)
    assert s.proc.wait(timeout=120) == 0, s.log_text()
    for i in range(n):
        status, events = out[i]
        assert status == 200 and events[-1] == "[DONE]", (i, out[i])
        assert json.loads(events[-2])["usage"]["completion_tokens"] == 24
    assert "draining" in s.log_text() and "stopped" in s.log_text()
    s.log.close()


def test_sigkill_under_load_then_restart_is_clean(tmp_path):
    s = Ds4Server(log_dir=tmp_path).start()
    out = {}
    threads = [threading.Thread(target=stream_request, args=(s.port, i, 2000, out)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    s.proc.send_signal(signal.SIGKILL)
    assert s.proc.wait(timeout=30) == -signal.SIGKILL
    s.log.close()
    for t in threads:
        t.join(timeout=60)
    assert all(status != 200 or events[-1:] != ["[DONE]"] for status, events in out.values())
    again = Ds4Server(log_dir=tmp_path)
    again.port, again.base = s.port, s.base  # the same port, taken over at once
    again.log_path = tmp_path / "restart.log"
    again.args[again.args.index("--port") + 1] = str(s.port)
    with again:
        m = parse_metrics(again.metrics())
        assert metric(m, "ds4serve_request_success_total") == 0
        assert metric(m, "ds4serve_kv_cache_usage_perc") == 0
        assert_healthy(again)
