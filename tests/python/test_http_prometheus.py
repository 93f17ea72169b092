"""ds4serve's /metrics with the real Prometheus tools (Debian package `prometheus`):
`promtool check metrics` accepts a scrape taken after traffic touched every family; a Prometheus
server started on loopback scrapes ds4serve every second during a load, and PromQL queries over
its HTTP API return exactly the token and request counts the clients saw. Every expression of the
shipped Grafana dashboard (metrics/grafana-dashboard.json) is accepted by that Prometheus and only
names metrics the server exports.
"""
import json
import pathlib
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

from ds4serve_harness import MODEL_NAME, SOURCE_DIR, Ds4Server, free_port, parse_metrics

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DASHBOARD = SOURCE_DIR / "metrics" / "grafana-dashboard.json"


@pytest.fixture(scope="module", autouse=True)
def need_prometheus():
    for tool in (PROMTOOL, PROMETHEUS):
        if not pathlib.Path(tool).exists():
            pytest.fail(f"{tool} is missing (Debian package 'prometheus'; scripts/install-deps.sh installs it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with Ds4Server(log_dir=tmp_path_factory.mktemp("prom")) as s:
        yield s


def generate(server, n, max_tokens):
    usages = []
    for i in range(n):
        status, body = server.post_json("/v1/completions", {"prompt": f"Request {i} of the load", "max_tokens": max_tokens,
                                                            "ignore_eos": True, "stream": False})
        assert status == 200, body
        usages.append(body["usage"])
    return usages


def test_promtool_accepts_a_scrape(server, tmp_path):
    generate(server, 2, 4)
    server.post_json("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2})
    server.post_json("/v1/chat/completions", {"messages": "not a list"})
    text = server.metrics()
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert text.endswith("\n")


class Prometheus:
    def __init__(self, target_port, tmp_path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: ds4serve\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n")
        self.log = open(tmp_path / "prometheus.log", "w")
        self.proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("prometheus did not become ready: " + (tmp_path / "prometheus.log").read_text())

    def query(self, expr):
        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr):
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def wait_for(prom, expr, expected, timeout=30):
    deadline = time.time() + timeout
    value = None
    while time.time() < deadline:
        value = prom.value(expr)
        if value == expected:
            return value
        time.sleep(0.5)
    return value


def test_prometheus_scrapes_during_load(server, tmp_path):
    prom = Prometheus(server.port, tmp_path)
    try:
        sel = f'{{job="ds4serve",model_name="{MODEL_NAME}"}}'
        assert wait_for(prom, f'up{{job="ds4serve"}}', 1.0) == 1.0
        base = parse_metrics(server.metrics())
        gen0 = base[f'ds4serve_generation_tokens_total{{model_name="{MODEL_NAME}"}}']
        prompt0 = base[f'ds4serve_prompt_tokens_total{{model_name="{MODEL_NAME}"}}']
        length0 = base[f'ds4serve_request_success_total{{finished_reason="length",model_name="{MODEL_NAME}"}}']

        # Load: 4 concurrent clients x 3 requests x 12 tokens, lasting several scrape intervals.
        usages, lock = [], threading.Lock()

        def worker():
            u = generate(server, 3, 12)
            with lock:
                usages.extend(u)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        gen = sum(u["completion_tokens"] for u in usages)
        prompt = sum(u["prompt_tokens"] for u in usages)
        assert gen == 4 * 3 * 12

        assert wait_for(prom, f"ds4serve_generation_tokens_total{sel}", gen0 + gen) == gen0 + gen
        assert wait_for(prom, f"ds4serve_prompt_tokens_total{sel}", prompt0 + prompt) == prompt0 + prompt
        assert wait_for(prom, f'ds4serve_request_success_total{{job="ds4serve",finished_reason="length"}}',
                        length0 + 12) == length0 + 12
        # It scraped repeatedly while the load ran, and histograms are usable in PromQL.
        assert prom.value(f"count_over_time(ds4serve_generation_tokens_total{sel}[5m])") >= 3
        assert prom.value(f"ds4serve_time_to_first_token_seconds_count{sel}") >= 12
        p50 = prom.value(f"histogram_quantile(0.5, sum by (le) (ds4serve_inter_token_latency_seconds_bucket{sel}))")
        assert p50 is not None and 0 < p50 < 10

        # Every dashboard expression parses and evaluates, and names only exported metrics.
        exported = {k.partition("{")[0] for k in parse_metrics(server.metrics())}
        exported |= {n[:-len(s)] for n in exported for s in ("_bucket", "_sum", "_count") if n.endswith(s)}
        dashboard = json.loads(DASHBOARD.read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        assert len(exprs) >= 30
        for expr in exprs:
            for name in re.findall(r"\bds4serve_\w+", expr):
                assert name in exported or name.rsplit("_", 1)[0] in exported, f"{name} in {expr!r} is not exported"
            concrete = expr.replace("$__rate_interval", "1m").replace('model_name=~"$model_name"', 'model_name=~".+"')
            prom.query(concrete)  # raises on a PromQL error
    finally:
        prom.stop()


def test_engine_reports_experts_and_weight_bytes(server):
    # The CPU backend reports what each forward pass read: distinct routed experts (each at most
    # once per layer per step) and weight bytes.
    generate(server, 2, 4)
    m = parse_metrics(server.metrics())
    count = m[f'ds4serve_engine_unique_experts_per_step_count{{model_name="{MODEL_NAME}"}}']
    total = m[f'ds4serve_engine_unique_experts_per_step_sum{{model_name="{MODEL_NAME}"}}']
    assert count > 0
    # demo model: 6 layers, 4 experts per token, 16 experts per layer
    assert 6 * 4 <= total / count <= 6 * 16
    assert m[f'ds4serve_engine_weight_bytes_read_total{{model_name="{MODEL_NAME}"}}'] > 35e6 * count
