"""Deterministic fake OpenAI-compatible streaming server for the ds4serve-load tests.

Owns: a tiny asyncio HTTP/1.1 server (keep-alive, chunked SSE) whose token timing is known exactly:
the first content token at `first_delay_ms` after the request, then one every `gap_ms`, scheduled on
absolute times so jitter does not accumulate. Faults (HTTP errors, disconnects, stalls, stream
errors, slow first tokens) are injected on every K-th request. Run as a script; the first stdout
line is "PORT <n>". Used by tests/python/test_loadtest.py (and the llama-benchy cross-check).
"""
import argparse
import asyncio
import json
import time

WORDS = ["the", "of", "and", "to", "in", "is", "was", "for"]


class State:
    def __init__(self, args):
        self.args = args
        self.requests = 0          # generation requests received
        self.running = 0           # generation requests in flight
        self.max_running = 0
        self.generated = 0         # tokens sent
        self.ttft_sum = 0.0
        self.ttft_count = 0
        self.log = open(args.log, "a") if args.log else None

    def metrics_text(self):
        return (
            "# HELP fake_requests_total Generation requests received.\n"
            "# TYPE fake_requests_total counter\n"
            f"fake_requests_total {self.requests}\n"
            "# TYPE fake_generation_tokens_total counter\n"
            f"fake_generation_tokens_total {self.generated}\n"
            "# TYPE fake_requests_running gauge\n"
            f"fake_requests_running {self.running}\n"
            "# TYPE fake_max_concurrent_requests gauge\n"
            f"fake_max_concurrent_requests {self.max_running}\n"
            "# TYPE fake_time_to_first_token_seconds histogram\n"
            f'fake_time_to_first_token_seconds_bucket{{le="+Inf"}} {self.ttft_count}\n'
            f"fake_time_to_first_token_seconds_sum {self.ttft_sum}\n"
            f"fake_time_to_first_token_seconds_count {self.ttft_count}\n"
        )


def every(k, n):
    return k > 0 and n % k == 0


def prompt_words(body):
    if "messages" in body:
        text = " ".join(m.get("content", "") for m in body["messages"] if isinstance(m.get("content"), str))
    else:
        text = body.get("prompt", "")
    return len(text.split())


async def send_response(writer, status, body, content_type="application/json", extra=""):
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
              429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
    data = body.encode()
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {len(data)}\r\n{extra}\r\n".encode() + data)
    await writer.drain()


def chunk(writer, payload):
    data = payload.encode()
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def event(kind, text, chat, finish=None):
    if chat:
        delta = {kind: text} if kind else {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish}
        obj = "text_completion"
    return "data: " + json.dumps({"id": "fake", "object": obj, "model": "fake-model", "choices": [choice]}) + "\n\n"


async def stream(state, writer, body, chat, n, t0, idx):
    a = state.args
    first_delay = (a.slow_first_delay_ms if every(a.slow_every, idx) else a.first_delay_ms) / 1e3
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")
    if a.role_chunk and chat:
        chunk(writer, event(None, "", chat))
    if a.ping:
        chunk(writer, ": ping\n\n")
    await writer.drain()
    loop = asyncio.get_running_loop()
    per = max(1, a.tokens_per_chunk)
    sent = 0
    i = 0
    while sent < n:
        target = t0 + first_delay + i * a.gap_ms / 1e3
        delay = target - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if i == 0:
            state.ttft_sum += loop.time() - t0
            state.ttft_count += 1
        if every(a.disconnect_every, idx) and sent >= n // 2:
            writer.transport.abort()
            return
        if every(a.stall_every, idx) and sent >= n // 2:
            await asyncio.sleep(3600)
        if every(a.stream_error_every, idx) and sent >= n // 2:
            chunk(writer, 'data: {"error": {"message": "injected stream error", "type": "server_error"}}\n\n')
            chunk(writer, "data: [DONE]\n\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return
        k = min(per, n - sent)
        kind = "reasoning_content" if sent < a.reasoning else "content"
        text = "".join(" " + WORDS[(sent + j) % len(WORDS)] for j in range(k))
        finish = "length" if sent + k == n else None
        chunk(writer, event(kind, text, chat, finish))
        if a.ping and i % 3 == 1:
            chunk(writer, ": keep-alive\n\n")
        await writer.drain()
        sent += k
        state.generated += k
        i += 1
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": prompt_words(body) + a.template_tokens,
                 "completion_tokens": n + a.usage_extra, "total_tokens": 0}
        chunk(writer, "data: " + json.dumps({"id": "fake", "choices": [], "usage": usage}) + "\n\n")
    chunk(writer, "data: [DONE]\n\n")
    writer.write(b"0\r\n\r\n")
    await writer.drain()


async def generate(state, writer, path, headers, body):
    a = state.args
    t0 = asyncio.get_running_loop().time()
    state.requests += 1
    idx = state.requests
    if state.log:
        state.log.write(json.dumps({"path": path, "authorization": headers.get("authorization", ""),
                                    "body": body, "t": time.time()}) + "\n")
        state.log.flush()
    if a.api_key and headers.get("authorization") != f"Bearer {a.api_key}":
        return await send_response(writer, 401, '{"error":{"message":"bad key","type":"authentication_error"}}')
    if every(a.fail_every, idx):
        return await send_response(writer, a.fail_status,
                                   '{"error":{"message":"injected failure","type":"server_error"}}')
    chat = path.endswith("/chat/completions")
    n = int(body.get("max_tokens") or 16)
    if a.eos_at > 0 and not body.get("ignore_eos"):
        n = min(n, a.eos_at)
    state.running += 1
    state.max_running = max(state.max_running, state.running)
    try:
        if body.get("stream"):
            await stream(state, writer, body, chat, n, t0, idx)
        else:
            await asyncio.sleep(a.first_delay_ms / 1e3 + (n - 1) * a.gap_ms / 1e3)
            text = "".join(" " + WORDS[j % len(WORDS)] for j in range(n))
            msg = {"role": "assistant", "content": "Paris" + text} if chat else None
            choice = {"index": 0, "finish_reason": "length", **({"message": msg} if chat else {"text": text})}
            usage = {"prompt_tokens": prompt_words(body) + a.template_tokens, "completion_tokens": n}
            state.generated += n
            await send_response(writer, 200, json.dumps({"id": "fake", "choices": [choice], "usage": usage}))
    finally:
        state.running -= 1


async def handle(state, reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", "0"))
            raw = await reader.readexactly(length) if length else b""
            if method == "GET" and path.endswith("/models"):
                await send_response(writer, 200, '{"object":"list","data":[{"id":"fake-model","object":"model"}]}')
            elif method == "GET" and path == "/metrics":
                await send_response(writer, 200, state.metrics_text(), "text/plain; version=0.0.4")
            elif method == "POST" and (path.endswith("/chat/completions") or path.endswith("/completions")):
                try:
                    body = json.loads(raw)
                except ValueError:
                    await send_response(writer, 400, '{"error":{"message":"invalid JSON"}}')
                    continue
                await generate(state, writer, path, headers, body)
            else:
                await send_response(writer, 404, '{"error":{"message":"not found"}}')
            if headers.get("connection", "").lower() == "close":
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--first-delay-ms", type=float, default=50)
    p.add_argument("--gap-ms", type=float, default=20)
    p.add_argument("--tokens-per-chunk", type=int, default=1)
    p.add_argument("--reasoning", type=int, default=0, help="first N tokens go in reasoning_content")
    p.add_argument("--eos-at", type=int, default=0, help="stop after N tokens unless ignore_eos")
    p.add_argument("--template-tokens", type=int, default=5, help="added to the prompt word count in usage")
    p.add_argument("--usage-extra", type=int, default=0, help="added to completion_tokens in usage")
    p.add_argument("--no-role-chunk", dest="role_chunk", action="store_false")
    p.add_argument("--ping", action="store_true", help="send ':' comment lines")
    p.add_argument("--api-key", default="")
    p.add_argument("--fail-every", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=503)
    p.add_argument("--disconnect-every", type=int, default=0)
    p.add_argument("--stall-every", type=int, default=0)
    p.add_argument("--stream-error-every", type=int, default=0)
    p.add_argument("--slow-every", type=int, default=0)
    p.add_argument("--slow-first-delay-ms", type=float, default=500)
    p.add_argument("--log", default="", help="append every generation request as JSONL")
    return p.parse_args(argv)


async def main():
    args = parse_args()
    state = State(args)
    server = await asyncio.start_server(lambda r, w: handle(state, r, w), "127.0.0.1", args.port,
                                        backlog=1024)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
