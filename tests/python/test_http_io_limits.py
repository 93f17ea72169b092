"""The io-side limits of ds4serve over real HTTP (docs/HARDENING.md): request preparation (parsing,
chat rendering, tokenization) runs on the preparation pool, not on the io threads, so /health and
/metrics answer while a huge prompt is tokenized even with one io thread; the pool's queue is
bounded (503 server_overloaded + Retry-After beyond it, also for /tokenize and count_tokens);
clients that leave while their request is being prepared or waits for preparation leave nothing
behind; --max-connections-per-ip refuses one address's extra connection and serves others.

No timing is asserted: each test orders events (the huge request has not been answered when
/health was) and waits on the server's own gauge, ds4serve_num_requests_preparing.
"""
import json
import select
import socket
import time

from ds4serve_harness import Ds4Server, MODEL_NAME, metric, parse_metrics
from hardening_util import (CHAT, assert_healthy, chat_body, check_error, hold_counted_connection, http_request_bytes,
                            kv_idle, raw_exchange, read_all, split_response)

HUGE_MIB = 6  # tokenizing this takes about a second in a Release build (seconds on a busy machine)


def huge_chat_bytes():
    """A chat request whose single message is HUGE_MIB MiB of varied words (far over the context)."""
    sentence = "The quick brown fox {} jumps over the lazy dog near river {}. "
    parts, size, i = [], 0, 0
    while size < HUGE_MIB << 20:
        s = sentence.format(i, i * 7 % 1000)
        parts.append(s)
        size += len(s)
        i += 1
    return http_request_bytes("POST", CHAT, json.dumps(chat_body(content="".join(parts))).encode())


def send(port, data, source="127.0.0.1"):
    s = socket.create_connection(("127.0.0.1", port), timeout=120, source_address=(source, 0))
    s.sendall(data)
    return s


def answered(sock):
    """True when the server has sent something (or closed) on sock."""
    return bool(select.select([sock], [], [], 0)[0])


def preparing(server):
    return metric(parse_metrics(server.metrics()), "ds4serve_num_requests_preparing")


def wait_preparing(server, want, timeout=60):
    deadline = time.time() + timeout
    while (n := preparing(server)) != want:
        assert time.time() < deadline, f"ds4serve_num_requests_preparing stayed {n}, want {want}"
        time.sleep(0.02)


def aborted(server):
    return metric(parse_metrics(server.metrics()), "ds4serve_request_success_total", finished_reason="abort")


def test_health_answers_while_a_huge_prompt_is_tokenized(tmp_path):
    with Ds4Server("--io-threads", 1, "--prepare-threads", 1, log_dir=tmp_path) as s:
        big = send(s.port, huge_chat_bytes())
        wait_preparing(s, 1)  # /metrics answered on the only io thread while it is being prepared
        status, _, raw = s.request("GET", "/health", timeout=120)
        assert status == 200, raw
        assert not answered(big), "the huge request was answered before /health: it did not run off the io thread"
        status, _, body = split_response(read_all(big))
        check_error(status, body, 400, code="context_length_exceeded")
        big.close()
        assert preparing(s) == 0
        assert_healthy(s)


def test_the_preparation_queue_is_bounded(tmp_path):
    with Ds4Server("--prepare-threads", 1, "--max-prepare-queue", 0, log_dir=tmp_path) as s:
        big = send(s.port, huge_chat_bytes())
        wait_preparing(s, 1)
        for path, body in ((CHAT, chat_body()), ("/tokenize", {"model": MODEL_NAME, "prompt": "hello"})):
            raw = raw_exchange(s.port, http_request_bytes("POST", path, json.dumps(body).encode()))
            status, headers, payload = split_response(raw)
            check_error(status, payload, 503, code="server_overloaded")
            assert headers.get("retry-after") == "1", headers
        count = {"model": MODEL_NAME, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
        raw = raw_exchange(s.port, http_request_bytes("POST", "/v1/messages/count_tokens", json.dumps(count).encode()))
        status, headers, payload = split_response(raw)
        assert status == 503 and headers.get("retry-after") == "1", raw[:300]
        assert json.loads(payload)["type"] == "error", payload  # Anthropic's error shape on its path
        assert not answered(big), "the huge request was answered before the refusals: the test proves nothing"
        status, _, body = split_response(read_all(big))
        check_error(status, body, 400, code="context_length_exceeded")
        big.close()
        status, data = s.post_json("/tokenize", {"model": MODEL_NAME, "prompt": "hello"})
        assert status == 200 and data["count"] > 0, data
        assert_healthy(s)


def test_clients_that_leave_during_preparation_leave_nothing_behind(tmp_path):
    with Ds4Server("--prepare-threads", 1, "--max-prepare-queue", 8, log_dir=tmp_path) as s:
        before = aborted(s)
        big = send(s.port, huge_chat_bytes())
        wait_preparing(s, 1)
        # Four valid streamed requests queue behind it; their clients leave (FIN, RST) before they
        # are prepared, and the huge request's client leaves during its tokenization.
        body = json.dumps(chat_body(content="a short story", max_tokens=200, ignore_eos=True, stream=True)).encode()
        waiting = [send(s.port, http_request_bytes("POST", CHAT, body)) for _ in range(4)]
        wait_preparing(s, 5)
        for i, sock in enumerate(waiting + [big]):
            if i % 2:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
        wait_preparing(s, 0, timeout=120)
        deadline = time.time() + 30  # each prepared request is submitted and aborted at once
        while aborted(s) < before + 4 and time.time() < deadline:
            time.sleep(0.05)
        assert aborted(s) == before + 4
        kv_idle(s)
        assert_healthy(s)
        assert "connection ended by an error" not in s.log_text()


def test_connections_per_address_limit(tmp_path):
    # The limited address is 127.0.0.3, which the harness's own connections (127.0.0.1) never use.
    limited = "127.0.0.3"
    with Ds4Server("--max-connections-per-ip", 2, log_dir=tmp_path) as s:
        held = [hold_counted_connection(s.port, source=limited) for _ in range(2)]  # requests in progress
        with send(s.port, http_request_bytes("GET", "/health"), source=limited) as extra:
            assert read_all(extra) == b"", f"a third connection from {limited} was served"
        # Another address (all of 127/8 is loopback on Linux) is not limited by 127.0.0.3's count.
        with send(s.port, http_request_bytes("GET", "/health"), source="127.0.0.2") as other:
            assert split_response(read_all(other))[0] == 200
        for h in held:
            h.close()
        deadline = time.time() + 10
        while time.time() < deadline:  # the slots are freed once the server sees the closes
            with send(s.port, http_request_bytes("GET", "/health"), source=limited) as again:
                raw = read_all(again)
            if raw:
                break
            time.sleep(0.1)
        assert split_response(raw)[0] == 200
        assert_healthy(s)
