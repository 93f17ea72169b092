"""Shared helpers of the hardening tests (test_http_bad_*.py, test_http_overload*.py,
test_http_faults*.py): raw-socket HTTP exchanges that tolerate a server closing early, the OpenAI
error-shape check, and the health check every group ends with: a normal request succeeds and the
KV pool and the running / waiting gauges return to zero.
"""
import json
import socket
import time

from ds4serve_harness import MODEL_NAME, metric, parse_metrics

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def chat_body(content="Hello", max_tokens=2, **extra):
    return {"model": MODEL_NAME, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
            "reasoning_effort": "none", **extra}


def http_request_bytes(method, path, body=b"", headers=None, close=True):
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Content-Type: application/json")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_all(sock, limit=1 << 24):
    """Everything the peer sends until it closes (a reset after data counts as the end)."""
    out = b""
    try:
        while len(out) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return out


def raw_exchange(port, data, timeout=30):
    """Sends `data` (tolerating an early close by the server) and returns all bytes received."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_all(s)


def hold_counted_connection(port, source="127.0.0.1", timeout=30):
    """A connection the server has accepted and counts, kept busy with an unfinished request.

    A connection refused by --max-connections / --max-connections-per-ip is closed unanswered, and a
    slot freed by a closing connection frees a moment later, so sleeping is no proof of being
    counted: this one is served a keep-alive /health first (tried again while refused), then left
    with half a request header."""
    deadline = time.time() + timeout
    while True:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        s.sendall(http_request_bytes("GET", "/health", close=False))
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        if reply.startswith(b"HTTP/1.1 200"):
            s.sendall(b"GET /health HTTP/1.1\r\n")
            return s
        s.close()
        assert time.time() < deadline, "no connection was served"
        time.sleep(0.05)


def split_response(raw):
    """(status, headers dict with lower-case names, body bytes) of the first response in raw."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines and lines[0].startswith("HTTP/1."), f"no HTTP response: {raw[:200]!r}"
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", len(rest)))
    return status, headers, rest[:length]


def check_error(status, raw_body, want_status, param=None, code=None):
    """Asserts the OpenAI error shape, the status and (when given) param and code; returns the error."""
    assert status == want_status, f"status {status}, want {want_status}: {raw_body[:300]!r}"
    err = json.loads(raw_body)["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


def kv_idle(server, timeout=15):
    """Waits until no request runs or waits and no KV block is held; returns the last samples."""
    deadline = time.time() + timeout
    while True:
        samples = parse_metrics(server.metrics())
        busy = (metric(samples, "ds4serve_kv_cache_usage_perc"), metric(samples, "ds4serve_num_requests_running"),
                metric(samples, "ds4serve_num_requests_waiting"))
        if busy == (0, 0, 0):
            return samples
        assert time.time() < deadline, f"server not idle after {timeout} s: kv, running, waiting = {busy}"
        time.sleep(0.1)


def assert_healthy(server):
    """A normal request succeeds and the server returns to idle (KV usage zero)."""
    status, _, raw = server.request("GET", "/health")
    assert status == 200, raw
    status, data = server.post_json(CHAT, chat_body(max_tokens=2))
    assert status == 200, data
    assert data["usage"]["completion_tokens"] == 2 and data["choices"][0]["finish_reason"] == "length"
    kv_idle(server)
    assert server.proc.poll() is None, "the server exited"
