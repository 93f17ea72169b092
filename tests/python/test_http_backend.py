"""ds4serve's --backend option from the command line: a bad backend or --synth without the CUDA
backend is refused with a message naming the option; `--backend cuda` on a machine without a GPU
(CI) exits 1 saying that no CUDA device is usable (or that the build has no CUDA) instead of
crashing. On a machine with a GPU the last check is skipped (tests/cuda/cuda_serve_test.cpp and
scripts/h200_bench.sh exercise the server there)."""
import os
import pathlib
import shutil
import subprocess

import pytest

from ds4serve_harness import DEMO_MODEL, SERVER, need_binaries


def run_server(*args):
    return subprocess.run([str(SERVER), "--port", "0", *args], capture_output=True, text=True, timeout=120)


def gpu_present():
    return pathlib.Path("/dev/nvidia0").exists() or (shutil.which("nvidia-smi") is not None and
                                                     subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0)


def test_bad_backend_options_are_refused():
    need_binaries()
    p = run_server("--backend", "tpu")
    assert p.returncode == 1 and "--backend" in p.stderr and "cpu, cuda" in p.stderr, p.stderr
    p = run_server("--synth", "full")
    assert p.returncode == 1 and "needs --backend cuda" in p.stderr, p.stderr
    p = run_server("--help")
    assert p.returncode == 0 and "--backend" in p.stdout and "--synth" in p.stdout


def test_cuda_backend_without_a_gpu_is_a_clear_error():
    need_binaries()
    if gpu_present():
        pytest.skip("a GPU is present: the CUDA server is tested by cuda_serve_test / h200_bench.sh")
    p = run_server("--backend", "cuda", "--model", str(DEMO_MODEL))
    assert p.returncode == 1, p.stderr
    assert "no CUDA device" in p.stderr or "built without CUDA" in p.stderr, p.stderr
    assert "ds4serve: error:" in p.stderr
