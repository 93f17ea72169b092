# Speculative decoding through the server (issue 11): `ds4serve --mtp FILE` drafts with the MTP
# module and verifies in the batched target pass; greedy outputs must equal a server without MTP,
# and the spec-decode metrics must count the drafts. Uses the demo model and its MTP file (random
# weights: acceptance is near zero, which exercises the rollback path on every step).
import pathlib

from ds4serve_harness import BINARY_DIR, Ds4Server

MTP_FILE = BINARY_DIR / "models" / "tiny-q2-mtp.gguf"
PROMPTS = ["The quick brown fox", "Once upon a time in a land far away", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31"]


def greedy_texts(server):
    texts = []
    for prompt in PROMPTS:
        status, body = server.post_json("/v1/completions", {"prompt": prompt, "max_tokens": 12, "temperature": 0,
                                                            "ignore_eos": True})
        assert status == 200, body
        texts.append(body["choices"][0]["text"])
    return texts


def counter(metrics_text, name):
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_mtp_greedy_equals_plain_and_counts_drafts(tmp_path):
    assert MTP_FILE.exists(), f"{MTP_FILE} is built by the demo_model target"
    with Ds4Server(log_dir=tmp_path) as plain:
        expected = greedy_texts(plain)
    with Ds4Server("--mtp", str(MTP_FILE), "--mtp-draft", "2", log_dir=tmp_path) as spec:
        assert greedy_texts(spec) == expected
        text = spec.metrics()
    assert counter(text, "ds4serve_spec_decode_num_drafts_total") > 0
    assert counter(text, "ds4serve_spec_decode_num_draft_tokens_total") >= counter(text, "ds4serve_spec_decode_num_accepted_tokens_total")


def test_mtp_file_errors_are_reported(tmp_path):
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 20)
    server = Ds4Server("--mtp", str(bad), log_dir=tmp_path)
    try:
        server.start(timeout=60)
        started = True
    except Exception:
        started = False
    finally:
        server.stop()
    assert not started
    assert "not-a-model.gguf" in pathlib.Path(server.log_path).read_text()
