"""The CUDA emulation's own self-test (csrc/emulation/selftest.cpp, no torch) built with AddressSanitizer and
UndefinedBehaviorSanitizer, as `make sanitize` does: thread/block indices, barrier semantics, GPU-like launch errors
(divergent barrier, > 48 KB shared memory without the attribute, > 1024 threads), and the fused sampler kernel giving
each image the same result whatever the launch plan."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["-std=c++20", "-O1", "-g", "-ffp-contract=off", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


@pytest.mark.slow
@pytest.mark.parametrize("sanitizers", ["address,undefined", "undefined"])  # ucontext fibers / x86-64 fast switch
def test_emulation_selftest_is_clean_under_sanitizers(tmp_path, sanitizers):
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        if os.environ.get("CI") == "true":
            pytest.fail("no C++ compiler: CI must run the sanitizer self-test")
        pytest.skip("no C++ compiler on this machine")
    exe = tmp_path / "emulation_selftest"
    source = os.path.join(ROOT, "csrc", "emulation", "selftest.cpp")
    built = subprocess.run(
        [cxx, *FLAGS, f"-fsanitize={sanitizers}", source, "-o", str(exe)], capture_output=True, text=True, timeout=900
    )
    assert built.returncode == 0, built.stderr[-4000:]
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"}
    ran = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600, env=env)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-4000:]
    assert "emulation self-test: ok" in ran.stdout
    assert "runtime error" not in ran.stderr and "ERROR: AddressSanitizer" not in ran.stderr
