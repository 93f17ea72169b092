"""Starts and stops a real ds4serve process on the demo model for the HTTP tests.

The server listens on a free loopback port; start() waits until /health answers 200 and stop()
sends SIGTERM and expects a clean exit (the drain path). Its stderr goes to a log file that is
printed when something fails. Used by tests/python/test_http_*.py.
"""
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

SOURCE_DIR = pathlib.Path(os.environ.get("DS4_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BINARY_DIR = pathlib.Path(os.environ.get("DS4_BINARY_DIR", SOURCE_DIR / "build"))
SERVER = BINARY_DIR / "http" / "ds4serve"
DEMO_MODEL = BINARY_DIR / "models" / "tiny-q2.gguf"
MODEL_NAME = "ds4-tiny"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_binaries():
    missing = [str(p) for p in (SERVER, DEMO_MODEL) if not p.exists()]
    if missing:
        raise AssertionError(f"not built: {missing} (cmake --build <build> --target ds4serve demo_model)")


class Ds4Server:
    def __init__(self, *args, log_dir=None, threads=2):
        need_binaries()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.args = ["--host", "127.0.0.1", "--port", str(self.port), "--threads", str(threads), *map(str, args)]
        log_dir = pathlib.Path(log_dir or os.environ.get("TMPDIR", "/tmp"))
        self.log_path = log_dir / f"ds4serve-{self.port}.log"
        self.proc = None

    def start(self, timeout=120):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(SERVER), *self.args], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ds4serve exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"ds4serve did not become healthy in {timeout} s:\n{self.log_text()}")

    def log_text(self):
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout=60):
        """SIGTERM; returns the exit code (0 after a clean drain)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"ds4serve did not exit {timeout} s after SIGTERM:\n{self.log_text()}")
        finally:
            self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        rc = self.stop()
        if exc[0] is None:
            assert rc == 0, f"ds4serve exit code {rc}:\n{self.log_text()}"

    # Small raw-HTTP helpers (the SDK tests use the openai package instead).
    def request(self, method, path, body=None, headers=None, timeout=120):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if data is not None and "Content-Type" not in (headers or {}):
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def post_json(self, path, body, **kw):
        status, headers, raw = self.request("POST", path, body, **kw)
        return status, json.loads(raw) if raw else None

    def metrics(self):
        status, _, raw = self.request("GET", "/metrics")
        assert status == 200
        return raw.decode()


def parse_metrics(text):
    """{'name{labels}': value} for every sample line of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
    return out


def metric(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total
