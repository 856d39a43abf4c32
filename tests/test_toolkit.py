"""Importing pixelcnn points CUDA_HOME at the real toolkit and drops only torch's CPU-only notice."""

import os
import subprocess
import sys

from pixelcnn.toolkit import find_cuda_home

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CUDA_PATH")}
    env["PYTHONPATH"] = REPO
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_no_cuda_runtime_notice_but_other_warnings_still_show():
    r = run(
        "import pixelcnn, logging, os, torch.utils.cpp_extension as ext\n"
        "logging.getLogger('torch.utils.cpp_extension').warning('a real warning')\n"
        "print(os.environ.get('CUDA_HOME'), ext.CUDA_HOME)"
    )
    assert r.returncode == 0, r.stderr
    assert "No CUDA runtime is found" not in r.stderr
    assert "a real warning" in r.stderr
    home = find_cuda_home()
    if home:  # torch uses the toolkit that has libcudart, not the folder above nvcc
        assert r.stdout.split() == [home, home]
