"""ds4serve's HTTP behaviour with raw HTTP (no SDK), on the demo model: keep-alive, errors in the
OpenAI shape with the right statuses, header / body limits, Expect: 100-continue, API keys on the
right routes, CORS, SSE comment heartbeats while a long prompt is prefilled, a client that goes
away being aborted (metrics show it), SIGTERM draining (in-flight requests finish, new ones are
refused, exit 0; past the drain timeout the rest end with "abort"), and start-up failures.
"""
import http.client
import json
import socket
import subprocess
import threading
import time

import pytest

from ds4serve_harness import MODEL_NAME, SERVER, Ds4Server, metric, need_binaries, parse_metrics

CHAT = "/v1/chat/completions"


def body(max_tokens=4, stream=False, content="Hello", **extra):
    return {"model": MODEL_NAME, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "stream": stream, "reasoning_effort": "none", **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Ds4Server("--api-key", "k1", "--api-key", "k2", "--cors-origin", "https://app.example",
                  "--heartbeat", 0.2, log_dir=tmp_path_factory.mktemp("raw"))
    with s:
        yield s


def auth(key="k1"):
    return {"Authorization": f"Bearer {key}"}


def test_keep_alive_serves_many_requests_on_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("GET", "/health")
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
    sock = conn.sock
    for i in range(3):
        conn.request("POST", CHAT, json.dumps(body(max_tokens=2)), {**auth(), "Content-Type": "application/json"})
        r = conn.getresponse()
        data = json.loads(r.read())
        assert r.status == 200 and data["usage"]["completion_tokens"] == 2
        conn.request("POST", CHAT, json.dumps(body(max_tokens=2, stream=True)), auth())
        r = conn.getresponse()
        events = r.read().decode()
        assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
        assert events.endswith("data: [DONE]\n\n")
    assert conn.sock is sock, "the connection was not kept alive"
    conn.close()


def error_of(status_body):
    status, data = status_body
    return status, data["error"]


def test_errors_have_the_openai_shape(server):
    status, _, raw = server.request("POST", CHAT, b"{not json", headers=auth())
    err = json.loads(raw)["error"]
    assert status == 400 and err["code"] == "invalid_json" and err["param"] is None
    assert set(err) >= {"message", "type", "param", "code"}
    status, err = error_of(server.post_json(CHAT, body(max_tokens="ten"), headers=auth()))
    assert status == 400 and err["param"] == "max_tokens" and "integer" in err["message"]
    status, err = error_of(server.post_json(CHAT, body(top_k=-5), headers=auth()))
    assert status == 400 and err["param"] == "top_k"
    status, err = error_of(server.post_json(CHAT, {"messages": [{"role": "user"}]}, headers=auth()))
    assert status == 400 and err["param"] == "messages[0].content"
    status, err = error_of(server.post_json(CHAT, body(stream=False, stream_options={"include_usage": True}),
                                            headers=auth()))
    assert status == 400 and err["param"] == "stream_options"
    status, err = error_of(server.post_json(CHAT, {**body(), "model": "other"}, headers=auth()))
    assert status == 404 and err["code"] == "model_not_found"
    status, err = error_of(server.post_json(CHAT, body(max_tokens=8190, content="word " * 20), headers=auth()))
    assert status == 400 and err["code"] == "context_length_exceeded" and err["n_ctx"] == 8192
    assert err["n_prompt_tokens"] + 8190 > 8192
    status, _, raw = server.request("GET", "/v1/nothing-here", headers=auth())
    assert status == 404 and json.loads(raw)["error"]["code"] == "not_found"
    status, _, raw = server.request("GET", CHAT, headers=auth())
    assert status == 405
    status, err = error_of(server.post_json("/v1/completions", {"prompt": ["a", "b"]}, headers=auth()))
    assert status == 400 and err["param"] == "prompt"
    status, err = error_of(server.post_json("/detokenize", {"tokens": [1, 10 ** 8]}, headers=auth()))
    assert status == 400 and err["param"] == "tokens"


def test_api_keys_protect_the_api_but_not_health_and_metrics(server):
    assert server.request("GET", "/health")[0] == 200
    assert server.request("GET", "/metrics")[0] == 200
    status, _, raw = server.request("GET", "/v1/models")
    assert status == 401 and json.loads(raw)["error"]["type"] == "authentication_error"
    assert server.request("GET", "/v1/models", headers=auth("k3"))[0] == 401
    assert server.request("GET", "/v1/models", headers=auth("k"))[0] == 401
    assert server.request("GET", "/v1/models", headers=auth("k11"))[0] == 401
    assert server.request("GET", "/v1/models", headers=auth("k2"))[0] == 200
    assert server.request("GET", "/v1/models", headers={"authorization": "bearer k1"})[0] == 200
    assert server.request("GET", "/v1/models", headers={"x-api-key": "k2"})[0] == 200
    assert server.request("POST", "/tokenize", b'{"prompt":"a"}')[0] == 401


def test_header_and_body_limits(server):
    status, _, raw = server.request("GET", "/health", headers={"X-Big": "a" * (80 * 1024)})
    assert status == 431
    big = json.dumps(body(content="x" * (33 << 20))).encode()
    try:
        status, _, raw = server.request("POST", CHAT, big, headers=auth())
        assert status == 413 and json.loads(raw)["error"]["code"] == "request_too_large"
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server may close while the client is still sending; it must still be up:
    assert server.request("GET", "/health")[0] == 200


def test_expect_100_continue(server):
    payload = json.dumps({"prompt": "Hello world"}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"POST /tokenize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k1\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n")
        first = s.recv(1024)
        assert first.startswith(b"HTTP/1.1 100 Continue"), first
        s.sendall(payload)
        reply = b""
        while b'"tokens"' not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert b"HTTP/1.1 200" in reply and b'"count":3' in reply


def test_cors(server):
    status, headers, _ = server.request("OPTIONS", CHAT, headers={"Origin": "https://app.example",
                                                                   "Access-Control-Request-Method": "POST"})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    status, headers, _ = server.request("GET", "/v1/models", headers={**auth(), "Origin": "https://app.example"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://app.example"
    status, headers, _ = server.request("GET", "/v1/models", headers={**auth(), "Origin": "https://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers


def test_heartbeats_while_a_long_prompt_is_prefilled(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.request("POST", CHAT, json.dumps(body(max_tokens=1, stream=True, content="word " * 700)), auth())
    r = conn.getresponse()
    text = r.read().decode()
    assert r.status == 200
    first_data = text.index("data: ")
    assert text[:first_data].startswith(": ping\n\n"), text[:200]
    assert text.endswith("data: [DONE]\n\n")


def test_client_that_goes_away_is_aborted(server):
    before = parse_metrics(server.metrics())
    aborted0 = metric(before, "ds4serve_request_success_total", finished_reason="abort")
    # Non-streaming: the server notices the closed socket while it waits for the engine.
    payload = json.dumps(body(max_tokens=4000, ignore_eos=True)).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(b"POST " + CHAT.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
        time.sleep(0.5)
    # Streaming: closed after the first token.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("POST", CHAT, json.dumps(body(max_tokens=4000, stream=True, ignore_eos=True)), auth())
    r = conn.getresponse()
    line = r.readline()
    while line.startswith(b":") or line == b"\n":  # heartbeats while a slow (e.g. sanitized) server prefills
        line = r.readline()
    assert line.startswith(b"data: ")
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        after = parse_metrics(server.metrics())
        if metric(after, "ds4serve_request_success_total", finished_reason="abort") >= aborted0 + 2:
            break
        time.sleep(0.1)
    assert metric(after, "ds4serve_request_success_total", finished_reason="abort") == aborted0 + 2
    # Both stopped long before 4000 tokens (the demo model makes ~40 tokens/s).
    assert metric(after, "ds4serve_generation_tokens_total") - metric(before, "ds4serve_generation_tokens_total") < 1000


def read_events(response):
    events = []
    for raw in response:
        line = raw.decode().strip()
        if line.startswith("data: "):
            events.append(line[6:])
            if line == "data: [DONE]":
                break
    return events


def test_sigterm_drains_in_flight_requests(tmp_path):
    s = Ds4Server("--drain-timeout", 30, log_dir=tmp_path).start()
    idle = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
    idle.request("GET", "/health")
    assert idle.getresponse().read() and True
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    conn.request("POST", CHAT, json.dumps(body(max_tokens=40, stream=True, ignore_eos=True,
                                               stream_options={"include_usage": True})))
    r = conn.getresponse()
    first = r.readline()
    assert first.startswith(b"data: ")
    s.proc.send_signal(15)
    time.sleep(0.3)
    # A kept-alive connection is told the server is going away; new connections are refused.
    idle.request("GET", "/health")
    h = idle.getresponse()
    assert h.status == 503 and h.getheader("Retry-After") and h.getheader("Connection") == "close"
    h.read()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=5).close()
    events = read_events(r)
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])["usage"]
    assert usage["completion_tokens"] == 40
    assert json.loads(events[-3])["choices"][0]["finish_reason"] == "length"
    assert s.proc.wait(timeout=30) == 0
    assert "draining" in s.log_text() and "stopped" in s.log_text()


def test_drain_timeout_aborts_the_rest(tmp_path):
    s = Ds4Server("--drain-timeout", 1, log_dir=tmp_path).start()
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    conn.request("POST", CHAT, json.dumps(body(max_tokens=4000, stream=True, ignore_eos=True)))
    r = conn.getresponse()
    assert r.readline().startswith(b"data: ")
    t0 = time.time()
    s.proc.send_signal(15)
    events = read_events(r)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["choices"][0]["finish_reason"] == "abort"
    assert s.proc.wait(timeout=30) == 0
    assert time.time() - t0 < 15


def test_start_up_failures_name_the_problem(tmp_path):
    need_binaries()
    p = subprocess.run([str(SERVER), "--model", str(tmp_path / "missing.gguf"), "--port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "missing.gguf" in p.stderr
    p = subprocess.run([str(SERVER), "--port", "70000"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "--port" in p.stderr
    p = subprocess.run([str(SERVER), "--frobnicate"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "unknown option --frobnicate" in p.stderr
    p = subprocess.run([str(SERVER), "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "--api-key" in p.stdout
