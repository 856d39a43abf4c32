"""Static proof of the real CUDA build without a GPU: csrc/cuda/sampler_kernels.cu and csrc/cuda/gated_kernels.cu
compiled for sm_80 and sm_90 with ``nvcc -Xptxas -v``; every kernel instantiation must use no local-memory spills, no
stack, at most 255 registers, and leave room within the architecture's per-block shared-memory limit for the seed
model's rows (the gated kernels: the default gated model's) (docs/DESIGN.md §6)."""

import os
import re
import shutil
import subprocess

import pytest

from pixelcnn.toolkit import find_cuda_home

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# per-block shared memory a kernel may opt into (CUDA programming guide, compute capabilities 8.0 and 9.0)
SHARED_LIMIT = {"sm_80": 163 * 1024, "sm_90": 227 * 1024}


def seed_model_rows(hidden=256, channels=3, kernel_size=7, block_kernel_size=3) -> int:
    """Elements of one image's shared rows at the seed size (32x32x3, h = 256): 2h residual stream, 2h head
    hidden, h block hidden, the largest live-tap patch, 256 logits."""

    def taps(k, cin):
        return (k // 2 * k + k // 2 + 1) * cin

    return 2 * hidden + 2 * hidden + hidden + max(taps(kernel_size, channels), taps(block_kernel_size, hidden)) + 256


def _nvcc():
    home = find_cuda_home()
    nvcc = os.path.join(home, "bin", "nvcc") if home else shutil.which("nvcc")
    if not nvcc or not os.path.isfile(nvcc):
        if os.environ.get("CI") == "true":
            pytest.fail("nvcc not found: CI must check the CUDA build statically (install the CUDA toolkit)")
        pytest.skip("nvcc not found (no CUDA toolkit on this machine)")
    return nvcc


def compile_report(tmp_path_factory, source: str) -> str:
    """ptxas -v output of csrc/cuda/<source> compiled for sm_80 and sm_90 (as setup.py builds it: --fmad=false)."""
    nvcc = _nvcc()
    out = tmp_path_factory.mktemp("nvcc") / (os.path.splitext(source)[0] + ".o")
    cmd = [
        nvcc,
        "-c",
        "-O3",
        "--fmad=false",
        "-std=c++20",
        "-Xptxas",
        "-v",
        "-gencode",
        "arch=compute_80,code=sm_80",
        "-gencode",
        "arch=compute_90,code=sm_90",
        os.path.join(ROOT, "csrc", "cuda", source),
        "-o",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stderr


@pytest.fixture(scope="module")
def ptxas_report(tmp_path_factory):
    return compile_report(tmp_path_factory, "sampler_kernels.cu")


@pytest.fixture(scope="module")
def gated_ptxas_report(tmp_path_factory):
    return compile_report(tmp_path_factory, "gated_kernels.cu")


def parse(report: str):
    """{(arch, kernel): {"registers", "smem", "spill_stores", "spill_loads", "stack"}} from ptxas -v output."""
    kernels = {}
    current = None
    for line in report.splitlines():
        m = re.search(r"Compiling entry function '(\w+)' for '(sm_\d+)'", line)
        if m:
            current = (m.group(2), m.group(1))
            kernels[current] = {}
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            kernels[current].update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            kernels[current]["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            kernels[current]["smem"] = int(s.group(1)) if s else 0
    return kernels


@pytest.mark.slow
def test_sampler_kernels_compile_without_spills_and_fit_shared_memory(ptxas_report):
    kernels = parse(ptxas_report)
    for arch in SHARED_LIMIT:
        mine = {name: k for (a, name), k in kernels.items() if a == arch and "sample_steps" in name}
        # float and double, 1 and 4 images per block
        assert len(mine) == 4, (arch, sorted(mine))
        for name, k in mine.items():
            assert k.keys() >= {"registers", "smem", "spill_stores", "spill_loads", "stack"}, (arch, name, k)
            assert k["spill_stores"] == 0 and k["spill_loads"] == 0, (arch, name, k)
            assert k["stack"] == 0, (arch, name, k)
            assert k["registers"] <= 255, (arch, name, k)
            t, group = re.search(r"sample_stepsI([df])Li(\d+)E", name).groups()  # <double|float, images per block>
            itemsize, group = (8 if t == "d" else 4), int(group)
            dynamic = group * seed_model_rows() * itemsize
            assert k["smem"] + dynamic <= SHARED_LIMIT[arch], (arch, name, k["smem"], dynamic)


def gated_model_rows(hidden=64, channels=3, kernel_size=7, block_kernel_size=3) -> tuple[int, int]:
    """Elements of the gated kernels' shared rows at the default gated model (32x32x3, h = 64, k0 = 7, k = 3): per
    image of the step kernel (the largest horizontal patch (p+1)*Cin, h_pre 2h, gate h, stream h, head hidden 2h, 256
    logits) and per position of the row kernel (the largest vertical patch, vA p*k*C or vB (p+1)*k*h; v_pre and link
    2h each)."""
    p0, p = kernel_size // 2, block_kernel_size // 2
    step = max((p0 + 1) * channels, (p + 1) * hidden) + 4 * hidden + 2 * hidden + 256
    row = max(p0 * kernel_size * channels, (p + 1) * block_kernel_size * hidden) + 4 * hidden
    return step, row


@pytest.mark.slow
def test_gated_kernels_compile_without_spills_and_fit_shared_memory(gated_ptxas_report):
    kernels = parse(gated_ptxas_report)
    step_rows, row_rows = gated_model_rows()
    for arch in SHARED_LIMIT:
        mine = {
            name: k
            for (a, name), k in kernels.items()
            if a == arch and ("horizontal_steps" in name or "vertical_row" in name)
        }
        # float and double; step kernel 1 and 4 images per block, row kernel 1 and 8 positions per tile
        assert len(mine) == 8, (arch, sorted(mine))
        for name, k in mine.items():
            assert k.keys() >= {"registers", "smem", "spill_stores", "spill_loads", "stack"}, (arch, name, k)
            assert k["spill_stores"] == 0 and k["spill_loads"] == 0, (arch, name, k)
            assert k["stack"] == 0, (arch, name, k)
            assert k["registers"] <= 128, (arch, name, k)  # __launch_bounds__(128, 4): 4 blocks per SM
            kind, t, group = re.search(r"(horizontal_steps|vertical_row)I([df])Li(\d+)E", name).groups()
            itemsize, group = (8 if t == "d" else 4), int(group)
            dynamic = group * (step_rows if kind == "horizontal_steps" else row_rows) * itemsize
            assert k["smem"] + dynamic <= SHARED_LIMIT[arch], (arch, name, k["smem"], dynamic)
