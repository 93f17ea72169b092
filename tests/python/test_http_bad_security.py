"""Security settings over real HTTP (issue #12): API keys are never logged (right or wrong, bearer or
x-api-key); /health and /metrics access follows --health-access / --metrics-access; prompt text
never reaches the log unless --log-prompts is given, and then control characters are escaped so a
prompt cannot forge log lines; unknown field names are escaped the same way.
"""
import json
import subprocess
import time

import pytest

from ds4serve_harness import SERVER, Ds4Server
from hardening_util import CHAT, COMPLETIONS, chat_body, check_error

KEY = "sk-test-4f1c9e77d2"
WRONG = "sk-wrong-90ab13cd55"
MARKER = "PROMPT-MARKER-7d3e"
INJECTED = "first line\nds4serve: FORGED LOG LINE"


def auth(key=KEY):
    return {"Authorization": f"Bearer {key}"}


class KeyedServer(Ds4Server):
    """Waits for /health with the API key (the harness asks without one)."""

    def start(self, timeout=120):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(SERVER), *self.args], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, f"ds4serve exited:\n{self.log_text()}"
            try:
                if self.request("GET", "/health", headers=auth(), timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"ds4serve did not become healthy:\n{self.log_text()}")


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """Keys required everywhere, /metrics not served, prompts not logged (the default)."""
    s = KeyedServer("--api-key", KEY, "--health-access", "key", "--metrics-access", "off",
                    log_dir=tmp_path_factory.mktemp("private"))
    s.start()
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def logging_server(tmp_path_factory):
    """Keys required for /metrics but not /health; prompts logged."""
    s = Ds4Server("--api-key", KEY, "--metrics-access", "key", "--log-prompts",
                  log_dir=tmp_path_factory.mktemp("logging"))
    s.start()
    yield s
    assert s.stop() == 0


def test_health_and_metrics_behind_the_key(private):
    status, _, raw = private.request("GET", "/health")
    check_error(status, raw, 401, code="invalid_api_key")
    assert private.request("GET", "/health", headers=auth())[0] == 200
    assert private.request("GET", "/health", headers=auth(WRONG))[0] == 401
    status, _, raw = private.request("GET", "/metrics", headers=auth())
    check_error(status, raw, 404, code="not_found")
    status, _, raw = private.request("GET", "/metrics")
    check_error(status, raw, 404, code="not_found")


def test_metrics_key_and_public_health(logging_server):
    assert logging_server.request("GET", "/health")[0] == 200
    status, _, raw = logging_server.request("GET", "/metrics")
    check_error(status, raw, 401)
    status, _, raw = logging_server.request("GET", "/metrics", headers={"x-api-key": KEY})
    assert status == 200 and b"ds4serve_" in raw


def exercise(server):
    """Requests carrying the marker and both keys in every way a client may send them."""
    body = chat_body(content=f"{MARKER} tell me", max_tokens=2)
    assert server.request("POST", CHAT, json.dumps(body).encode(), headers=auth())[0] == 200
    assert server.request("POST", CHAT, json.dumps(body).encode(), headers={"x-api-key": KEY})[0] == 200
    assert server.request("POST", CHAT, json.dumps(body).encode(), headers=auth(WRONG))[0] == 401
    assert server.request("POST", CHAT, json.dumps(body).encode(), headers={"x-api-key": WRONG})[0] == 401
    comp = {"prompt": f"{MARKER} once upon", "max_tokens": 2}
    assert server.request("POST", COMPLETIONS, json.dumps(comp).encode(), headers=auth())[0] == 200
    bad = chat_body(content=MARKER)
    bad["messages"][0]["role"] = MARKER  # an error that quotes request text back to the client
    status, _, raw = server.request("POST", CHAT, json.dumps(bad).encode(), headers=auth())
    check_error(status, raw, 400, param="messages[0].role")
    inject = chat_body(content=INJECTED, max_tokens=1, **{"odd\nds4serve: FORGED FIELD": 1})
    assert server.request("POST", CHAT, json.dumps(inject).encode(), headers=auth())[0] == 200


def test_keys_and_prompts_stay_out_of_the_log(private):
    exercise(private)
    log = private.log_text()
    assert KEY not in log and WRONG not in log
    assert MARKER not in log and "first line" not in log
    assert "POST /v1/chat/completions 200" in log  # requests are logged, without content
    assert "\nds4serve: FORGED" not in log and "odd\\x0ads4serve: FORGED FIELD" in log


def test_log_prompts_logs_escaped_prompts_but_never_keys(logging_server):
    exercise(logging_server)
    log = logging_server.log_text()
    assert KEY not in log and WRONG not in log
    assert MARKER + " tell me" in log and MARKER + " once upon" in log
    assert "first line\\x0ads4serve: FORGED LOG LINE" in log
    assert "\nds4serve: FORGED" not in log
    assert_healthy_with_key(logging_server)


def assert_healthy_with_key(server):
    status, _, raw = server.request("POST", CHAT, json.dumps(chat_body()).encode(), headers=auth())
    assert status == 200, raw
    status, _, raw = server.request("GET", "/metrics", headers=auth())
    assert status == 200
    text = raw.decode()
    assert 'ds4serve_kv_cache_usage_perc{model_name="ds4-tiny"} 0' in text
