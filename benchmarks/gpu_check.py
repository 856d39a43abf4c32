"""``make gpu-check`` / ``python -m benchmarks.gpu_check``: everything that needs a GPU, in one command.

On a CUDA machine (torch >= 2.11, triton >= 3.6, pytest; no package registry needed) it
1. builds the C++/CUDA extension in place (``--skip-build`` to keep the one there),
2. runs the test suite, whose GPU-only tests run there (float64 references, TF32 as PyTorch sets it),
3. times the masked-conv kernel on the seed's layer shapes: Triton vs cuDNN on W*M and vs cuDNN on the cropped
   (k//2+1) x k kernel, fp32 (TF32 and IEEE) and bf16, forward and forward+backward, TFLOP/s over live taps,
   and a seed-size train step (reference vs triton, fp32 and --amp),
4. writes ``benchmarks/results/<gpu-name>.md`` (and ``.json``) naming the device and versions.
On a machine without a GPU it says so, runs the static checks (the kernels compiled for sm_90 / sm_80 and their SASS
read, ``benchmarks.triton_sass``) and exits 0. ``--from-json F`` renders the report of an earlier run's JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

import torch

from pixelcnn.ops.precision import conv_fp32_precision, conv_precision, set_conv_fp32_precision

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_TORCH, MIN_TRITON = (2, 11), (3, 6)
PRECISIONS = ("tf32", "ieee", "bf16")


def _version_tuple(v: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", v)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def machine_name(device_name: str) -> str:
    """A file-name-safe name for the report: 'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or "gpu"


def check_versions() -> list[str]:
    import triton

    problems = []
    if _version_tuple(torch.__version__) < MIN_TORCH:
        problems.append(f"torch {torch.__version__} is older than {'.'.join(map(str, MIN_TORCH))}")
    if _version_tuple(triton.__version__) < MIN_TRITON:
        problems.append(f"triton {triton.__version__} is older than {'.'.join(map(str, MIN_TRITON))}")
    return problems


def set_conv_tf32(tf32: bool) -> None:
    """Whether cuDNN convolutions (and so the Triton kernel) may use TF32 (``pixelcnn.ops.precision``: conv and RNN
    set together, so that later exports' ``allow_tf32`` reads stay valid)."""
    set_conv_fp32_precision("tf32" if tf32 else "ieee")


def _set_precision(precision: str) -> torch.dtype:
    """PyTorch's fp32 convolution precision for a run (the Triton kernel follows the same setting)."""
    set_conv_tf32(precision == "tf32")
    return torch.bfloat16 if precision == "bf16" else torch.float32


def time_kernels(cases=None, precisions=PRECISIONS, impls=("reference", "cropped", "triton"), rep_ms: int = 100):
    """Median milliseconds and TFLOP/s (live taps) per (case, precision, impl, pass) with triton.testing.do_bench."""
    import triton

    from benchmarks.bench_masked_conv import SEED_CASES, make_case, step_fn

    rows = []
    with conv_precision(conv_fp32_precision()):  # the settings as they were, restored after the runs
        for case in cases or SEED_CASES:
            for precision in precisions:
                dtype = _set_precision(precision)
                inputs = make_case(case, dtype, "cuda")
                for backward in (False, True):
                    for impl in impls:
                        ms = triton.testing.do_bench(
                            step_fn(impl, case, inputs, backward), rep=rep_ms, return_mode="median"
                        )
                        rows.append(
                            dict(
                                case=case.name,
                                precision=precision,
                                impl=impl,
                                mode="fwd+bwd" if backward else "fwd",
                                ms=round(ms, 4),
                                tflops=round(case.flops(backward) / (ms * 1e-3) / 1e12, 1),
                            )
                        )
                        print(
                            f"{case.name:10s} {precision:5s} {rows[-1]['mode']:8s} {impl:10s} {ms:8.3f} ms "
                            f"{rows[-1]['tflops']:7.1f} TFLOP/s",
                            flush=True,
                        )
    return rows


def time_train_steps(batch=64, size=32, channels=3, hidden=256, blocks=15, rep_ms: int = 200):
    """Median ms of one seed-size Adam step (the training loss of ``pixelcnn.train``) per conv impl, fp32 and --amp."""
    import triton

    from pixelcnn.config import ModelConfig
    from pixelcnn.model import PixelCNN
    from pixelcnn.train import loss_fn

    rows = []
    for impl in ("reference", "triton"):
        for amp in (False, True):
            torch.manual_seed(0)
            config = ModelConfig(
                channels=channels, image_size=(size, size), num_classes=10, hidden=hidden, blocks=blocks
            )
            model = PixelCNN(config).cuda().set_conv_impl(impl)
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            image = torch.randint(0, 256, (batch, channels, size, size), dtype=torch.uint8, device="cuda")
            labels = torch.arange(batch, device="cuda") % 10

            def step(model=model, opt=opt, image=image, labels=labels, amp=amp):
                opt.zero_grad(set_to_none=True)
                loss_fn(model, image, labels, amp).backward()
                opt.step()

            ms = triton.testing.do_bench(step, rep=rep_ms, return_mode="median")
            rows.append(dict(impl=impl, amp=amp, ms=round(ms, 3), images_per_s=round(batch / ms * 1e3, 1)))
            print(f"train step {impl:9s} amp={amp!s:5s} {ms:8.2f} ms", flush=True)
    return rows


def render_report(result: dict) -> str:
    """Markdown for one run: device, versions, test outcome, and one table row per (case, precision, pass) with
    each implementation's time and Triton's speedup over cuDNN on W*M and on the cropped kernel."""
    lines = [
        f"# GPU check: {result['device']}",
        "",
        f"torch {result['torch']}, triton {result['triton']}, CUDA {result.get('cuda')}, {result.get('date', '')}",
        "",
        f"Tests: {result.get('tests', 'not run')}",
        "",
        "Masked conv, seed layer shapes (batch 64, 32x32), median of `triton.testing.do_bench`; TFLOP/s count "
        "live taps only. reference = cuDNN on W*M (k x k), cropped = cuDNN on the (k//2+1) x k crop.",
        "",
        "| layer | precision | pass | reference ms | cropped ms | triton ms | triton TFLOP/s "
        "| vs reference | vs cropped |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by_key: dict = {}
    for r in result.get("kernels", []):
        by_key.setdefault((r["case"], r["precision"], r["mode"]), {})[r["impl"]] = r
    for (case, precision, mode), impls in by_key.items():
        ms = {k: v["ms"] for k, v in impls.items()}
        tri = impls.get("triton")
        speed = {
            other: f"{ms[other] / ms['triton']:.2f}x" if tri and other in ms and ms["triton"] > 0 else "-"
            for other in ("reference", "cropped")
        }
        lines.append(
            f"| {case} | {precision} | {mode} | {ms.get('reference', '-')} | {ms.get('cropped', '-')} | "
            f"{ms.get('triton', '-')} | {tri['tflops'] if tri else '-'} | {speed['reference']} | "
            f"{speed['cropped']} |"
        )
    if result.get("train_step"):
        lines += [
            "",
            "Seed-size train step (batch 64, 32x32x3, h=256, 15 blocks; Adam; `--amp` = bf16 autocast):",
            "",
            "| conv | amp | ms | images/s |",
            "|---|---|---|---|",
        ]
        lines += [f"| {r['impl']} | {r['amp']} | {r['ms']} | {r['images_per_s']} |" for r in result["train_step"]]
    return "\n".join(lines) + "\n"


def write_report(result: dict, out_dir: str) -> str:
    from pixelcnn.atomic import atomic_write_text

    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, machine_name(result["device"]))
    atomic_write_text(base + ".json", json.dumps(result, indent=1))
    atomic_write_text(base + ".md", render_report(result))
    return base + ".md"


def static_checks(arches=(90, 80)) -> int:
    """The GPU-free part: compile forward / grad_input / grad_weight for the named arches, print the SASS table."""
    from benchmarks import triton_sass

    return triton_sass.main(["--arch", *map(str, arches), "--dtype", "bf16", "tf32", "--shape", "3x3B-h256", "7x7A-C3"])


def _run(cmd: list[str], env=None) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=RESULTS, help="directory for <gpu-name>.md / .json (default benchmarks/results)")
    p.add_argument("--skip-build", action="store_true", help="keep the extension already built")
    p.add_argument("--skip-tests", action="store_true", help="only the kernel benchmark")
    p.add_argument("--quick", action="store_true", help="bf16 and one layer only (a smoke run)")
    p.add_argument("--from-json", help="render the report of an earlier run's JSON and exit")
    a = p.parse_args(argv)
    if a.from_json:
        with open(a.from_json) as f:
            print(write_report(json.load(f), a.out))
        return 0
    if not torch.cuda.is_available():
        print(
            "gpu-check: no CUDA GPU on this machine; running the static checks only (kernels compiled for "
            "sm_90/sm_80, SASS read). Run `make gpu-check` on a GPU machine for the tests and the benchmark."
        )
        static_checks()
        return 0
    problems = check_versions()
    if problems:
        print("gpu-check: " + "; ".join(problems), file=sys.stderr)
        return 2
    import triton

    result = dict(
        device=torch.cuda.get_device_name(),
        torch=torch.__version__,
        triton=triton.__version__,
        cuda=torch.version.cuda,
        python=platform.python_version(),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )
    status = 0
    if not a.skip_build:
        status |= _run([sys.executable, "setup.py", "build_ext", "--inplace"])
    if not a.skip_tests:
        rc = _run([sys.executable, "-m", "pytest", "-q", "-ra", "tests"])
        result["tests"] = "passed" if rc == 0 else f"FAILED (pytest exit {rc})"
        status |= rc
    from benchmarks.bench_masked_conv import SEED_CASES

    cases = SEED_CASES[-1:] if a.quick else SEED_CASES
    result["kernels"] = time_kernels(cases, ("bf16",) if a.quick else PRECISIONS)
    if not a.quick:
        result["train_step"] = time_train_steps()
    print("wrote", write_report(result, a.out))
    return status


if __name__ == "__main__":
    sys.exit(main())
