"""tool-eval-bench (PyPI, pinned) against ds4serve's Anthropic Messages endpoint, to completion.

The demo model has random weights, so every scenario fails on quality; the point is protocol
compatibility: the run completes, every one of the 15 core scenarios reached the model (usage
reported), and none is an infrastructure failure (timeout, connection error or 5xx, which the
benchmark classifies itself). Runs in a temporary directory (the tool writes runs/ and data/ there).
"""
import json
import pathlib
import subprocess
import sys

from tool_eval_bench.domain.scenarios import INFRASTRUCTURE_FAILURE_KINDS

from ds4serve_harness import MODEL_NAME, Ds4Server


def test_tool_eval_bench_runs_to_completion(tmp_path):
    with Ds4Server(log_dir=tmp_path) as server:
        out = tmp_path / "result.json"
        cli = pathlib.Path(sys.executable).parent / "tool-eval-bench"
        cmd = [str(cli), "run", "--short", "--base-url", server.base, "--format", "anthropic", "--model", MODEL_NAME,
               "--api-key", "unused", "--no-probe-engine", "--no-live", "--timeout", "120", "--seed", "1",
               "--backend-kwargs", json.dumps({"max_tokens": 12}), "--json-file", str(out),
               "--output-dir", str(tmp_path / "runs")]
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:] + server.log_text()[-4000:]
    result = json.loads(out.read_text())
    assert result["status"] == "completed"
    scenarios = result["scores"]["scenario_results"]
    assert len(scenarios) == result["total_scenarios"] == 15
    infra = [(s["scenario_id"], s["failure_kind"], s["summary"]) for s in scenarios
             if s["failure_kind"] in INFRASTRUCTURE_FAILURE_KINDS]
    assert infra == [], infra
    assert all(s["prompt_tokens"] and s["completion_tokens"] for s in scenarios), scenarios
