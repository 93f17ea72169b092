"""Hostile HTTP transport (issue #12): malformed request lines and headers, conflicting or huge
Content-Length, unsupported Transfer-Encoding (request smuggling), oversized headers and bodies,
slow-loris clients trickling the header or the body, pipelined requests (also behind a streamed
generation), and clients that vanish mid-request, during prefill or mid-stream. Each case gets its
status and OpenAI error body or the connection is closed; after every group a normal request
succeeds, aborted requests are counted and the KV pool is back to zero.
"""
import json
import socket
import struct
import threading
import time

import pytest

from ds4serve_harness import Ds4Server, metric, parse_metrics
from hardening_util import (CHAT, assert_healthy, chat_body, check_error, hold_counted_connection, http_request_bytes,
                            kv_idle, raw_exchange, read_all, split_response)

MAX_BODY = 1 << 20
HEADER_TIMEOUT = 2
READ_TIMEOUT = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Ds4Server("--max-body-bytes", MAX_BODY, "--header-timeout", HEADER_TIMEOUT, "--read-timeout", READ_TIMEOUT,
                  log_dir=tmp_path_factory.mktemp("bad_transport"))
    with s:
        yield s


OK_BODY = json.dumps(chat_body(max_tokens=1)).encode()
H = b"Host: x\r\nConnection: close\r\n"

RAW = [
    ("garbage_request_line", b"HELLO WORLD\r\n\r\n", 400, "malformed_request"),
    ("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "malformed_request"),
    ("bare_lf_line_endings", b"GET /health HTTP/1.1\nHost: x\n\n", 400, "malformed_request"),
    ("nul_in_header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, "malformed_request"),
    ("space_in_header_name", b"GET /health HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400, "malformed_request"),
    ("content_length_text", b"POST /v1/chat/completions HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\n", 400,
     "malformed_request"),
    ("content_length_twice", b"POST /v1/chat/completions HTTP/1.1\r\n" + H +
     b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400, "malformed_request"),
    ("content_length_huge", b"POST /v1/chat/completions HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999\r\n\r\n",
     413, "request_too_large"),
    ("content_length_over_limit_with_expect", b"POST /v1/chat/completions HTTP/1.1\r\n" + H +
     b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1), 413, "request_too_large"),
    ("body_over_limit", b"POST /v1/chat/completions HTTP/1.1\r\n" + H +
     b"Content-Length: %d\r\n\r\n" % (2 * MAX_BODY) + b"x" * (2 * MAX_BODY), 413, "request_too_large"),
    ("one_header_80k", b"GET /health HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 80000 + b"\r\n\r\n", 431,
     "headers_too_large"),
    ("twenty_thousand_headers", b"GET /health HTTP/1.1\r\n" + H + b"".join(b"X-H%d: v\r\n" % i for i in range(20000))
     + b"\r\n", 431, "headers_too_large"),
    ("url_100k", b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n" + H + b"\r\n", 431, "headers_too_large"),
    ("transfer_encoding_gzip", b"POST /v1/chat/completions HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: gzip\r\n\r\nGET /health HTTP/1.1\r\n\r\n", 501, "unsupported_transfer_encoding"),
    ("transfer_encoding_identity", b"POST /v1/chat/completions HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: identity\r\nContent-Length: 2\r\n\r\n{}", 501, "unsupported_transfer_encoding"),
    ("bad_chunk_size", b"POST /v1/chat/completions HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n", 400, "malformed_request"),
    ("chunked_body_ok", b"POST /v1/chat/completions HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" +
     b"%x\r\n" % len(OK_BODY) + OK_BODY + b"\r\n0\r\n\r\n", 200, None),
    ("unknown_method", b"FROB /health HTTP/1.1\r\n" + H + b"\r\n", 405, "method_not_allowed"),
    ("unknown_path", b"GET /admin/../../etc/passwd HTTP/1.1\r\n" + H + b"\r\n", 404, "not_found"),
    ("http_1_0", b"GET /health HTTP/1.0\r\n\r\n", 200, None),
]


@pytest.mark.parametrize("name,data,status,code", RAW, ids=[c[0] for c in RAW])
def test_malformed_transport(server, name, data, status, code):
    raw = raw_exchange(server.port, data)
    got, headers, body = split_response(raw)
    if status == 200:
        assert got == 200, raw[:300]
    else:
        check_error(got, body, status, code=code)
        if status != 404 and status != 405:
            assert headers.get("connection") == "close", headers
    # Nothing after the first response: a smuggled second request is never answered.
    assert raw.count(b"HTTP/1.") == 1, raw[:600]


def test_transport_group_leaves_server_healthy(server):
    assert_healthy(server)


# --- slow clients -----------------------------------------------------------------------------------
def trickle(port, prefix, data, interval, result):
    """Sends prefix at once, then data one byte per interval; result['closed_after'] = bytes of data
    sent when the server closed the connection (None: it never did)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    result["closed_after"] = None
    try:
        s.sendall(prefix)
        for i in range(len(data)):
            s.sendall(data[i:i + 1])
            time.sleep(interval)
            s.settimeout(0.001)
            try:
                if s.recv(65536) == b"":
                    result["closed_after"] = i + 1
                    return
            except socket.timeout:
                pass
            s.settimeout(60)
    except (ConnectionResetError, BrokenPipeError):
        result["closed_after"] = i + 1
    finally:
        s.close()


def test_slow_loris_header_is_cut_off_and_others_are_served(server):
    # 20 clients each trickle a 200-byte header at 10 bytes/s (20 s); the header timeout is 2 s.
    header = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * 150 + b"\r\n\r\n"
    results = [dict() for _ in range(20)]
    threads = [threading.Thread(target=trickle, args=(server.port, b"", header, 0.1, r)) for r in results]
    for t in threads:
        t.start()
    time.sleep(0.5)
    assert_healthy(server)  # served while the slow clients hold their connections
    for t in threads:
        t.join(timeout=60)
    for r in results:
        assert r["closed_after"] is not None and r["closed_after"] < len(header), r


def test_slow_body_is_cut_off(server):
    # The header at once, then 300 body bytes at 20 bytes/s (15 s); the read timeout is 3 s.
    body = json.dumps(chat_body(content="x" * 200)).encode()
    data = http_request_bytes("POST", CHAT, body)
    head = data[:len(data) - len(body)]
    result = {}
    trickle(server.port, head, body, 0.05, result)
    assert result["closed_after"] is not None and result["closed_after"] < len(body), result
    assert_healthy(server)


def test_silent_new_connection_is_closed_but_keep_alive_may_idle(server):
    # A new connection that sends nothing is closed after the header timeout (2 s here), far below
    # the keep-alive idle timeout (120 s); a connection that already served a request may idle longer.
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        assert s.recv(1) == b""  # closed by the server (a timeout here raises socket.timeout)
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        for _ in range(2):
            s.sendall(http_request_bytes("GET", "/health", close=False))
            reply = b""
            while not reply.endswith(b'{"status":"ok"}'):
                chunk = s.recv(4096)
                assert chunk, "the kept-alive connection was closed"
                reply += chunk
            time.sleep(HEADER_TIMEOUT + 1)


def test_connection_limit(tmp_path):
    with Ds4Server("--max-connections", 3, log_dir=tmp_path) as s:
        held = [hold_counted_connection(s.port) for _ in range(3)]  # counted, a request in progress on each
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as extra:
            extra.sendall(http_request_bytes("GET", "/health"))
            assert read_all(extra) == b"", "a connection over the limit was served"
        for h in held:
            h.close()
        deadline = time.time() + 10
        while time.time() < deadline:  # the slots are freed once the server sees the closes
            raw = raw_exchange(s.port, http_request_bytes("GET", "/health"))
            if raw:
                break
            time.sleep(0.1)
        assert split_response(raw)[0] == 200
        assert_healthy(s)


# --- pipelining -------------------------------------------------------------------------------------
def responses_in(raw):
    """Splits a byte stream holding several HTTP/1.1 responses (Content-Length or chunked bodies)."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                body, rest = body + rest[:size], rest[size + 2:]
                if size == 0:
                    break
        else:
            n = int(headers.get("content-length", 0))
            body, rest = rest[:n], rest[n:]
        out.append((int(lines[0].split()[1]), headers, body))
        raw = rest
    return out


def test_pipelined_requests_are_answered_in_order(server):
    data = (http_request_bytes("GET", "/health", close=False) + http_request_bytes("POST", CHAT, OK_BODY, close=False)
            + http_request_bytes("GET", "/v1/models", close=False) + http_request_bytes("GET", "/nope", close=True))
    got = responses_in(raw_exchange(server.port, data))
    assert [r[0] for r in got] == [200, 200, 200, 404], got
    assert json.loads(got[0][2]) == {"status": "ok"}
    assert json.loads(got[1][2])["object"] == "chat.completion"
    assert json.loads(got[2][2])["object"] == "list"


def test_pipelined_request_behind_a_stream_waits_for_it(server):
    stream = json.dumps(chat_body(max_tokens=8, stream=True, ignore_eos=True)).encode()
    data = http_request_bytes("POST", CHAT, stream, close=False) + http_request_bytes("GET", "/health", close=True)
    got = responses_in(raw_exchange(server.port, data))
    assert [r[0] for r in got] == [200, 200], got
    events = [line for line in got[0][2].decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"
    assert json.loads(got[1][2]) == {"status": "ok"}


def test_pipelining_group_leaves_server_healthy(server):
    assert_healthy(server)


# --- clients that vanish ----------------------------------------------------------------------------
def reset(sock):
    """Closes with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def aborted(server):
    return metric(parse_metrics(server.metrics()), "ds4serve_request_success_total", finished_reason="abort")


def wait_aborted(server, want, timeout=20):
    deadline = time.time() + timeout
    while aborted(server) < want and time.time() < deadline:
        time.sleep(0.1)
    return aborted(server)


def test_disconnect_mid_request_body(server):
    body = json.dumps(chat_body(content="x" * 5000)).encode()
    head = http_request_bytes("POST", CHAT, body)[:-len(body)]
    for close in (lambda s: s.close(), reset):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(head + body[:len(body) // 2])
        close(s)
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.sendall(head[:20])  # mid request line
    reset(s)
    assert_healthy(server)


def test_disconnect_during_prefill_and_mid_stream(server):
    before = aborted(server)
    # During prefill: a long prompt, the socket reset once the stream's header arrived (the request
    # is queued; its first token needs the whole prefill).
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(http_request_bytes("POST", CHAT, json.dumps(chat_body(content="word " * 1500, max_tokens=50,
                                                                    stream=True)).encode()))
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    reset(s)
    # Mid-stream: after the first token.
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(http_request_bytes("POST", CHAT, json.dumps(chat_body(max_tokens=4000, ignore_eos=True,
                                                                    stream=True)).encode()))
    buf = b""
    while b"data: " not in buf:
        buf += s.recv(4096)
    reset(s)
    assert wait_aborted(server, before + 2) == before + 2
    kv_idle(server)


def test_many_streams_reset_at_once(server):
    before = aborted(server)
    socks = []
    for i in range(16):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        s.sendall(http_request_bytes("POST", CHAT, json.dumps(chat_body(content=f"story {i}", max_tokens=4000,
                                                                        ignore_eos=True, stream=True)).encode()))
        socks.append(s)
    for s in socks:  # wait until every stream has started
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(4096)
    for s in socks:
        reset(s)
    assert wait_aborted(server, before + 16) == before + 16
    kv_idle(server)


def test_disconnect_group_leaves_server_healthy(server):
    assert_healthy(server)
    assert "connection ended by an error" not in server.log_text()
