"""Overload (issue #12), the short CI version of the run in docs/HARDENING.md: the server's capacity
is measured, then Poisson arrivals at three times that rate for 25 s (the long run uses twice; three
keeps the queue filling when CI's parallel tests make the measured capacity noisy), a fifth of the
clients giving up at a random moment. The queue is bounded (requests beyond --max-num-seqs + --max-waiting get 503 with
Retry-After and an OpenAI error body), every admitted request that its client kept completes to
max_tokens, nothing else fails, and afterwards no KV block is held and the server serves normally.
Latencies and RSS are printed (pytest -s) but, being timings, not asserted; RSS growth is bounded.
"""
import asyncio
import json

from ds4serve_harness import Ds4Server, metric, parse_metrics
from hardening_util import assert_healthy, kv_idle
from overload_driver import overload

MAX_SEQS, MAX_WAITING = 4, 2


def test_open_loop_beyond_capacity(tmp_path):
    with Ds4Server("--max-num-seqs", MAX_SEQS, "--max-waiting", MAX_WAITING, log_dir=tmp_path) as s:
        assert_healthy(s)
        summary = asyncio.run(overload(s.port, s.proc.pid, duration=25, factor=3.0, abort_share=0.2,
                                       max_tokens=(8, 24), capacity_concurrency=MAX_SEQS, capacity_seconds=6))
        rejected = summary.pop("rejected_503")
        print(json.dumps(summary, indent=1))
        assert summary["errors"] == [], summary["errors"]
        assert summary["incomplete_admitted"] == [], summary["incomplete_admitted"]
        assert set(summary["statuses"]) <= {"200", "503", "aborted_before_reply"}, summary["statuses"]
        assert rejected, f"the queue never filled: {summary}"
        for r in rejected:
            assert r["code"] == "server_overloaded" and r["retry_after"] and int(r["retry_after"]) >= 1, r
        assert summary["max_in_engine"] <= MAX_SEQS + MAX_WAITING
        assert summary["completed"] > 0
        samples = kv_idle(s)
        assert metric(samples, "ds4serve_request_success_total", finished_reason="abort") <= summary["client_aborts"]
        assert summary["rss_after_mib"] - summary["rss_before_mib"] < 128, summary
        assert_healthy(s)
        assert parse_metrics(s.metrics())  # still scrapable
