"""32 simultaneous streaming clients against ds4serve on the demo model; half of them hang up
mid-stream. The survivors must complete with exact usage counts (every sampled token reported in
exactly one chunk via return_token_ids) and exactly the text each one produces when run without
the others (seeded sampling does not depend on the batch); the aborted half must show up in the
metrics (finished_reason="abort") and give back their KV blocks while the survivors still run.
"""
import json
import socket
import threading
import time
import http.client

import pytest

from ds4serve_harness import MODEL_NAME, Ds4Server, metric, parse_metrics

CLIENTS = 32
SURVIVOR_TOKENS = 40
KILL_AFTER_CHUNKS = 3


def request_body(i, max_tokens):
    return {"model": MODEL_NAME, "messages": [{"role": "user", "content": f"Client {i}: tell me about the number {i * 7}."}],
            "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True},
            "return_token_ids": True, "ignore_eos": True, "reasoning_effort": "none", "seed": 1000 + i,
            "temperature": 0.8}


class Client(threading.Thread):
    def __init__(self, port, i, kill, start):
        super().__init__(daemon=True)
        self.port, self.i, self.kill, self.start_barrier = port, i, kill, start
        self.chunks, self.text, self.token_ids, self.usage, self.finish, self.error = 0, "", [], None, None, None
        self.done = threading.Event()

    def run(self):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
            self.start_barrier.wait()
            conn.request("POST", "/v1/chat/completions", json.dumps(request_body(self.i, 4000 if self.kill else SURVIVOR_TOKENS)),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            assert r.status == 200, r.read()
            for raw in r:
                line = raw.decode().strip()
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    break
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    self.usage = chunk["usage"]
                for c in chunk["choices"]:
                    self.chunks += 1
                    self.text += c["delta"].get("content") or ""
                    self.token_ids += c.get("token_ids", [])
                    self.finish = c["finish_reason"] or self.finish
                if self.kill and self.chunks >= KILL_AFTER_CHUNKS:
                    conn.sock.shutdown(socket.SHUT_RDWR)  # hang up abruptly, mid-stream
                    conn.close()
                    return
            conn.close()
        except Exception as e:  # reported by the test
            self.error = repr(e)
        finally:
            self.done.set()


def run_alone(port, i):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    body = request_body(i, SURVIVOR_TOKENS)
    body["stream"] = False
    del body["stream_options"]
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200
    return json.loads(r.read())


def test_32_streaming_clients_half_killed(tmp_path):
    with Ds4Server("--max-num-seqs", CLIENTS, log_dir=tmp_path) as server:
        before = parse_metrics(server.metrics())
        start = threading.Barrier(CLIENTS)
        clients = [Client(server.port, i, kill=(i % 2 == 0), start=start) for i in range(CLIENTS)]
        for c in clients:
            c.start()
        killers = [c for c in clients if c.kill]
        survivors = [c for c in clients if not c.kill]

        # While the survivors still stream, the killed half's KV must come back.
        peak_used, used_after_kill, running_after = 0.0, None, None
        deadline = time.time() + 240
        while time.time() < deadline and not all(c.done.is_set() for c in survivors):
            m = parse_metrics(server.metrics())
            used = metric(m, "ds4serve_kv_blocks", state="used")
            peak_used = max(peak_used, used)
            aborted = metric(m, "ds4serve_request_success_total", finished_reason="abort")
            aborted0 = metric(before, "ds4serve_request_success_total", finished_reason="abort")
            if all(c.done.is_set() for c in killers) and aborted - aborted0 == len(killers) and used_after_kill is None:
                # Two more engine steps: the aborts reached the engine and the stats were refreshed.
                steps0 = metric(m, "ds4serve_engine_steps_total")
                while metric(m, "ds4serve_engine_steps_total") < steps0 + 2 and time.time() < deadline:
                    time.sleep(0.02)
                    m = parse_metrics(server.metrics())
                if not any(c.done.is_set() for c in survivors):
                    used_after_kill = metric(m, "ds4serve_kv_blocks", state="used")
                    running_after = metric(m, "ds4serve_num_requests_running")
            time.sleep(0.05)
        for c in clients:
            c.join(timeout=60)

        errors = [(c.i, c.error) for c in clients if c.error]
        assert not errors, errors
        after = parse_metrics(server.metrics())
        assert metric(after, "ds4serve_request_success_total", finished_reason="abort") - \
            metric(before, "ds4serve_request_success_total", finished_reason="abort") == len(killers)
        assert metric(after, "ds4serve_request_success_total", finished_reason="length") - \
            metric(before, "ds4serve_request_success_total", finished_reason="length") == len(survivors)
        assert peak_used >= len(clients) * 0.75, f"never saw most clients holding KV (peak {peak_used})"
        assert used_after_kill is not None, "the survivors finished before the kills were visible"
        assert used_after_kill <= len(survivors), (used_after_kill, running_after)
        assert running_after <= len(survivors)

        for c in survivors:
            assert c.finish == "length", (c.i, c.finish)
            assert c.usage["completion_tokens"] == SURVIVOR_TOKENS, (c.i, c.usage)
            assert len(c.token_ids) == SURVIVOR_TOKENS, (c.i, len(c.token_ids))
            assert c.chunks <= SURVIVOR_TOKENS + 1  # one token per chunk (+ the final chunk)

        # Undisturbed: each survivor's text is what it produces alone (seeded, batch-independent).
        # Checked for a quarter of them to keep the test short.
        for c in survivors[::4]:
            alone = run_alone(server.port, c.i)
            assert alone["choices"][0]["message"]["content"] == c.text, c.i
            assert alone["usage"]["prompt_tokens"] == c.usage["prompt_tokens"]
