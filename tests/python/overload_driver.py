"""Open-loop overload driver for ds4serve (issue #12): measures the server's capacity with a short
closed loop, then sends Poisson arrivals at a multiple of it for a while, each a streamed chat
request on its own connection; a share of the clients give up at a random moment (FIN or RST).
Meanwhile it samples /metrics (running, waiting, KV usage) and the server's RSS. Returns (and as a
script prints) one summary dict. Used by tests/python/test_http_overload.py (short run in CI) and
run by hand for the long figures in docs/HARDENING.md:

    python tests/python/overload_driver.py --port 8000 --pid PID --duration 300 --factor 2
"""
import argparse
import asyncio
import json
import random
import socket
import struct
import time
import urllib.request

WORDS = ("alpha beta gamma delta river stone cloud light paper glass music garden window story "
         "silver market winter orange forest bridge").split()


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        key, value = line.rsplit(" ", 1)
        name = key.split("{")[0]
        out[name] = out.get(name, 0.0) + float(value) if name.endswith("_total") else float(value)
    return out


def request_bytes(rng, max_tokens):
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 120)))
    body = json.dumps({"messages": [{"role": "user", "content": words}], "max_tokens": max_tokens,
                       "ignore_eos": True, "stream": True, "reasoning_effort": "none"}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def one_request(port, rng, max_tokens, abort_after, timeout):
    """Runs one request; returns its record (status, tokens, latency, how it ended)."""
    rec = {"status": None, "tokens": 0, "finish": None, "done": False, "client_abort": False, "error": None,
           "retry_after": None, "code": None}
    t0 = time.monotonic()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(request_bytes(rng, max_tokens))
        await writer.drain()
        deadline = t0 + (abort_after if abort_after is not None else timeout)
        await asyncio.wait_for(read_response(reader, rec, t0), max(deadline - time.monotonic(), 0.001))
    except asyncio.TimeoutError:
        if abort_after is not None:
            rec["client_abort"] = True
        else:
            rec["error"] = "timeout"
    except (ConnectionError, OSError) as e:
        rec["error"] = type(e).__name__
    finally:
        if writer is not None:
            if rec["client_abort"] and rng.random() < 0.5:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
    rec["e2e_s"] = time.monotonic() - t0
    return rec


async def read_response(reader, rec, t0):
    status_line = await reader.readline()
    rec["status"] = int(status_line.split()[1])
    headers = {}
    while True:
        line = (await reader.readline()).decode("latin-1").strip()
        if not line:
            break
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    rec["retry_after"] = headers.get("retry-after")
    if rec["status"] != 200:
        body = await reader.read()
        try:
            rec["code"] = json.loads(body)["error"]["code"]
        except (ValueError, KeyError):
            rec["code"] = "unparsable"
        return
    async for raw in reader:  # chunked framing: payload lines carry the SSE data
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            rec["done"] = True
            return
        event = json.loads(line[6:])
        for choice in event.get("choices", []):
            delta = choice.get("delta", {})
            if delta.get("content") or delta.get("reasoning_content"):
                if rec["tokens"] == 0:
                    rec["ttft_s"] = time.monotonic() - t0
                rec["tokens"] += 1
            if choice.get("finish_reason"):
                rec["finish"] = choice["finish_reason"]
        if "usage" in event and event["usage"]:
            rec["usage_tokens"] = event["usage"]["completion_tokens"]


async def measure_capacity(port, concurrency, seconds, max_tokens, seed):
    """Completed requests per second of a closed loop at `concurrency` users."""
    rng = random.Random(seed)
    end = time.monotonic() + seconds
    done = 0

    async def user():
        nonlocal done
        while time.monotonic() < end:
            rec = await one_request(port, rng, max_tokens, None, 300)
            if rec["status"] == 200 and rec["done"]:
                done += 1

    t0 = time.monotonic()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    return done / (time.monotonic() - t0)


async def monitor(port, pid, stop, samples):
    while not stop.is_set():
        m = await asyncio.to_thread(scrape, port)
        samples.append({"t": time.monotonic(), "running": m.get("ds4serve_num_requests_running", 0),
                        "waiting": m.get("ds4serve_num_requests_waiting", 0),
                        "kv": m.get("ds4serve_kv_cache_usage_perc", 0), "rss_mib": rss_mib(pid) if pid else None})
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def overload(port, pid=None, duration=30, factor=2.0, capacity=None, abort_share=0.2, max_tokens=(16, 48),
                   capacity_concurrency=8, capacity_seconds=10, seed=1, timeout=300):
    """The whole run; returns the summary dict."""
    rng = random.Random(seed)
    if capacity is None:
        capacity = await measure_capacity(port, capacity_concurrency, capacity_seconds, max_tokens[1], seed)
    rate = factor * capacity
    rss_before = rss_mib(pid) if pid else None
    stop, samples, tasks = asyncio.Event(), [], []
    mon = asyncio.create_task(monitor(port, pid, stop, samples))
    t0 = time.monotonic()
    next_arrival = t0
    while next_arrival < t0 + duration:
        await asyncio.sleep(max(next_arrival - time.monotonic(), 0))
        abort_after = rng.uniform(0.05, 3.0) if rng.random() < abort_share else None
        tasks.append(asyncio.create_task(one_request(port, random.Random(rng.random()), rng.randint(*max_tokens),
                                                     abort_after, timeout)))
        next_arrival += rng.expovariate(rate)
    records = await asyncio.gather(*tasks)
    stop.set()
    await mon
    return summarize(records, samples, capacity, rate, duration, rss_before, rss_mib(pid) if pid else None)


def summarize(records, samples, capacity, rate, duration, rss_before, rss_after):
    admitted = [r for r in records if r["status"] == 200 and not r["client_abort"]]
    completed = [r for r in admitted if r["done"]]
    e2e = [r["e2e_s"] for r in completed]
    ttft = [r["ttft_s"] for r in completed if "ttft_s" in r]
    statuses = {}
    for r in records:
        key = str(r["status"]) if r["status"] is not None else (r["error"] or "aborted_before_reply")
        statuses[key] = statuses.get(key, 0) + 1
    return {
        "capacity_rps": round(capacity, 3), "offered_rps": round(rate, 3), "duration_s": duration,
        "requests": len(records), "statuses": statuses,
        "client_aborts": sum(r["client_abort"] for r in records),
        "admitted_not_aborted": len(admitted), "completed": len(completed),
        "incomplete_admitted": [r for r in admitted if not r["done"] or r["finish"] != "length"][:5],
        "errors": [r for r in records if r["error"]][:5],
        "rejected_503": [r for r in records if r["status"] == 503],
        "e2e_s": {"p50": percentile(e2e, 0.5), "p99": percentile(e2e, 0.99), "max": max(e2e) if e2e else None},
        "ttft_s": {"p50": percentile(ttft, 0.5), "p99": percentile(ttft, 0.99), "max": max(ttft) if ttft else None},
        "max_running": max((s["running"] for s in samples), default=0),
        "max_waiting": max((s["waiting"] for s in samples), default=0),
        "max_in_engine": max((s["running"] + s["waiting"] for s in samples), default=0),
        "rss_before_mib": rss_before, "rss_after_mib": rss_after,
        "rss_max_mib": max((s["rss_mib"] for s in samples if s["rss_mib"]), default=None),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, help="server pid, for RSS")
    ap.add_argument("--duration", type=float, default=300)
    ap.add_argument("--factor", type=float, default=2.0, help="offered load / measured capacity")
    ap.add_argument("--capacity", type=float, help="requests/s (skip the measurement)")
    ap.add_argument("--abort-share", type=float, default=0.2)
    ap.add_argument("--capacity-concurrency", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    s = asyncio.run(overload(a.port, a.pid, a.duration, a.factor, a.capacity, a.abort_share,
                             capacity_concurrency=a.capacity_concurrency, seed=a.seed))
    s["rejected_503"] = len(s["rejected_503"])
    print(json.dumps(s, indent=1))


if __name__ == "__main__":
    main()
