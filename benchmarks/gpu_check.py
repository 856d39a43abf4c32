"""``make gpu-check`` / ``python -m benchmarks.gpu_check``: everything that needs a GPU, in one command (<= 8 min).

On a CUDA machine (torch >= 2.11, triton >= 3.6, pytest; no package registry needed) it runs the PLAN, in order:
1. build: the C++/CUDA extension in place (``TORCH_CUDA_ARCH_LIST=9.0``, ``MAX_JOBS=16``; ``--skip-build`` keeps it),
2. tests: the GPU-only tests and the tests of the GPU-facing code (GPU_TESTS; nothing that needs ../shared, Chromium
   or Node), in parallel with pytest-xdist when present,
3. kernels: Triton vs cuDNN on W*M and on the cropped (k//2+1) x k kernel, TF32 / IEEE / bf16, forward and
   forward+backward, TFLOP/s over live taps,
4. sampler: the fused CUDA sampler (cached_ext) vs naive and vs cached on the same GPU, batch 1/16/64, at
   28x28x1 h=64 5 blocks and 32x32x3 h=256 15 blocks,
5. train_step: a seed-size Adam step, reference vs triton, fp32 vs --amp, eager vs --compile,
and writes ``<gpu-name>.md`` and ``.json`` to ``--out`` (benchmarks/results by default). Progress lines are flushed
as they happen; a failing step is recorded in the summary table (printed last) and the others still run.
``--rehearse`` (CPU, no GPU needed) runs the same steps in the same order with the same flags, the CUDA-only calls
replaced by their CPU / Triton-interpreter equivalents at tiny sizes, and renders the report from what it measured.
``--plan`` prints the plan with the estimated minutes per step on the H200. On a machine without a GPU and without
``--rehearse`` it runs the static checks (kernels compiled for sm_90 / sm_80, SASS read, ``benchmarks.triton_sass``)
and exits 0. ``--from-json F`` renders the report of an earlier run's JSON.
"""

from __future__ import annotations

import argparse
import functools
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


def median_ms(fn, rep_ms: int, device: str) -> float:
    """Median milliseconds of ``fn()``: triton.testing.do_bench on CUDA, a few wall-clock calls on CPU (rehearsal)."""
    if device == "cuda":
        import triton

        return triton.testing.do_bench(fn, rep=rep_ms, return_mode="median")
    fn()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[1]


def time_kernels(
    cases=None,
    precisions=PRECISIONS,
    impls=("reference", "cropped", "triton"),
    rep_ms: int = 100,
    device: str = "cuda",
    tiny: bool = False,
):
    """Median milliseconds and TFLOP/s (live taps) per (case, precision, impl, pass); ``tiny``: the rehearsal's
    scaled-down inputs (batch 2, 8x8, at most 16 channels)."""
    import dataclasses

    from benchmarks.bench_masked_conv import SEED_CASES, make_case, step_fn

    rows = []
    with conv_precision(conv_fp32_precision()):  # the settings as they were, restored after the runs
        for case in cases or SEED_CASES:
            for precision in precisions:
                dtype = _set_precision(precision)
                inputs = make_case(case, dtype, device, scale_down=tiny)
                flops_case = case
                if tiny:
                    x, w = inputs[0], inputs[1]
                    flops_case = dataclasses.replace(case, cin=x.shape[1], cout=w.shape[0], n=x.shape[0], size=8)
                for backward in (False, True):
                    for impl in impls:
                        ms = median_ms(step_fn(impl, case, inputs, backward), rep_ms, device)
                        rows.append(
                            dict(
                                case=case.name,
                                precision=precision,
                                impl=impl,
                                mode="fwd+bwd" if backward else "fwd",
                                ms=round(ms, 4),
                                tflops=round(flops_case.flops(backward) / (ms * 1e-3) / 1e12, 4 if tiny else 1),
                            )
                        )
                        print(
                            f"{case.name:10s} {precision:5s} {rows[-1]['mode']:8s} {impl:10s} {ms:8.3f} ms "
                            f"{rows[-1]['tflops']:7.1f} TFLOP/s",
                            flush=True,
                        )
    return rows


def time_train_steps(
    batch=64,
    size=32,
    channels=3,
    hidden=256,
    blocks=15,
    rep_ms: int = 200,
    device: str = "cuda",
    compiles=(False, True),
):
    """Median ms of one Adam step (the training loss of ``pixelcnn.train``) per conv impl, fp32 / --amp and eager /
    --compile (``torch.compile`` of the model, as ``pixelcnn.train --compile``)."""
    from pixelcnn.config import ModelConfig
    from pixelcnn.model import PixelCNN
    from pixelcnn.train import loss_fn

    rows = []
    for impl in ("reference", "triton"):
        for amp in (False, True):
            for compiled in compiles:
                torch.manual_seed(0)
                torch._dynamo.reset()
                config = ModelConfig(
                    channels=channels, image_size=(size, size), num_classes=10, hidden=hidden, blocks=blocks
                )
                model = PixelCNN(config).to(device).set_conv_impl(impl)
                opt = torch.optim.Adam(model.parameters(), lr=1e-4)
                run_model = torch.compile(model) if compiled else model
                image = torch.randint(0, 256, (batch, channels, size, size), dtype=torch.uint8, device=device)
                labels = torch.arange(batch, device=device) % 10

                def step(model=run_model, opt=opt, image=image, labels=labels, amp=amp):
                    opt.zero_grad(set_to_none=True)
                    loss_fn(model, image, labels, amp).backward()
                    opt.step()

                ms = median_ms(step, rep_ms, device)
                rows.append(
                    dict(impl=impl, amp=amp, compile=compiled, ms=round(ms, 3), images_per_s=round(batch / ms * 1e3, 1))
                )
                print(f"train step {impl:9s} amp={amp!s:5s} compile={compiled!s:5s} {ms:8.2f} ms", flush=True)
    return rows


# name: (arch, channels, size, hidden, blocks); the batches of the sampler step. gated h40/6 has pixelcnn h64/5's
# live parameter count (docs/DESIGN.md §3)
SAMPLER_SIZES = {
    "28x28x1-h64-5": ("pixelcnn", 1, 28, 64, 5),
    "gated-28x28x1-h40-6": ("gated", 1, 28, 40, 6),
    "32x32x3-h256-15": ("pixelcnn", 3, 32, 256, 15),
}
SAMPLER_BATCHES = (1, 16, 64)


def time_sampler(sizes=SAMPLER_SIZES, batches=SAMPLER_BATCHES, device: str = "cuda", naive_rows: int = 2):
    """Milliseconds per batch of images: the fused sampler (cached_ext; on CPU the extension's CPU op) vs cached and
    naive on the same device. Naive runs a ``naive_rows``-row prefix (its cost per row is the same for every row),
    scaled to the whole image."""
    import dataclasses

    from pixelcnn.architectures import build_model
    from pixelcnn.config import ModelConfig
    from pixelcnn.sampling import draw_uniforms, sample

    rows = []
    for name, (arch, c, size, hidden, blocks) in sizes.items():
        torch.manual_seed(0)
        config = ModelConfig(
            channels=c, image_size=(size, size), num_classes=10, arch=arch, hidden=hidden, blocks=blocks
        )
        model = build_model(config).to(device).eval()
        small = build_model(dataclasses.replace(config, image_size=(naive_rows, size))).to(device).eval()
        small.load_state_dict(model.state_dict())
        for n in batches:
            labels = torch.arange(n, device=device) % 10
            u = draw_uniforms((n, c, size, size), torch.Generator().manual_seed(0)).to(device)
            for method in ("naive", "cached", "cached_ext"):
                if method == "naive":
                    u_rows = u[:, :, :naive_rows].contiguous()
                    fn = functools.partial(sample, small, labels, 1.0, None, "naive", uniforms=u_rows)
                    scale = size / naive_rows
                else:
                    fn, scale = functools.partial(sample, model, labels, 1.0, None, method, uniforms=u), 1.0

                def timed(fn=fn):
                    fn()
                    if device == "cuda":
                        torch.cuda.synchronize()

                with torch.no_grad():
                    ms = median_ms(timed, 100, device) * scale
                rows.append(dict(size=name, batch=n, method=method, ms=round(ms, 3)))
                print(f"sampler {name:16s} batch {n:3d} {method:10s} {ms:10.2f} ms", flush=True)
    return rows


# The GPU-only tests and the tests of the GPU-facing code: none needs ../shared, Chromium or Node.
GPU_TESTS = (
    "tests/test_triton_masked_conv.py",
    "tests/test_triton_auto.py",
    "tests/test_triton_gpu_check.py",
    "tests/test_triton_sass.py",
    "tests/test_precision.py",
    "tests/test_cuda_emulated.py",
    "tests/test_extension.py",
    "tests/test_gated_extension.py",
    "tests/test_gated_cuda_emulated.py",
)
# (step, estimated minutes on the H200 with 16 cores, what it does)
PLAN = (
    ("build", 2.5, "extension build, TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16"),
    ("tests", 1.5, "pytest " + " ".join(GPU_TESTS) + " (-n 8 with pytest-xdist)"),
    ("kernels", 1.5, "masked conv Triton vs cuDNN W*M and cropped; tf32/ieee/bf16; fwd and fwd+bwd"),
    ("sampler", 1.3, "cached_ext vs cached vs naive, batch 1/16/64, 28x28x1 h64 b5, gated h40 b6, 32x32x3 h256 b15"),
    ("train_step", 1.0, "seed-size Adam step, reference/triton x fp32/--amp x eager/--compile"),
)


def print_plan(rehearse: bool) -> None:
    total = sum(m for _, m, _ in PLAN)
    print(f"gpu-check plan ({'rehearsal on CPU, tiny sizes' if rehearse else 'GPU'}; minutes estimated on the H200):")
    for i, (name, minutes, what) in enumerate(PLAN, 1):
        print(f"  {i}. {name:10s} ~{minutes:.1f} min  {what}", flush=True)
    print(f"  total      ~{total:.1f} min (plus the device machine's start)", flush=True)


def _pytest_cmd(rehearse: bool) -> list[str]:
    import importlib.util

    cmd = [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", *GPU_TESTS]
    if importlib.util.find_spec("xdist") is not None and not rehearse:
        cmd += ["-n", "8"]
    if rehearse:  # the same files and command; on CPU only the quick rules, the interpreter tests run in CI
        cmd += ["-k", "precision or gpu_check"]
    return cmd


def run_plan(
    result: dict, rehearse: bool, skip_build: bool, skip_tests: bool, quick: bool, out: str | None = None
) -> int:
    """Every PLAN step in order; a failure is recorded in result['steps'] and the next step still runs. With ``out``
    the report is rewritten after every step, so that a run stopped by a time limit keeps what it measured."""
    from benchmarks.bench_masked_conv import SEED_CASES

    device = "cpu" if rehearse else "cuda"
    steps = result.setdefault("steps", [])
    status = 0
    for name, minutes, _ in PLAN:
        start = time.perf_counter()
        print(f"== {name} (estimated {minutes:.1f} min on the H200)", flush=True)
        try:
            if name == "build":
                if skip_build:
                    steps.append(dict(step=name, status="skipped", seconds=0.0, estimate_min=minutes))
                    continue
                env = dict(os.environ, TORCH_CUDA_ARCH_LIST="9.0", MAX_JOBS="2" if rehearse else "16")
                rc = _run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], env=env)
                if rc:
                    raise RuntimeError(f"extension build exit {rc}")
            elif name == "tests":
                if skip_tests:
                    steps.append(dict(step=name, status="skipped", seconds=0.0, estimate_min=minutes))
                    continue
                rc = _run(_pytest_cmd(rehearse))
                result["tests"] = "passed" if rc == 0 else f"FAILED (pytest exit {rc})"
                if rc:
                    raise RuntimeError(f"pytest exit {rc}")
            elif name == "kernels":
                cases = SEED_CASES[-1:] if quick else SEED_CASES
                precisions = ("bf16",) if quick else PRECISIONS
                result["kernels"] = time_kernels(cases, precisions, device=device, tiny=rehearse)
            elif name == "sampler":
                tiny = {"tiny-4x4x1-h8-1": ("pixelcnn", 1, 4, 8, 1), "tiny-gated-4x4x1-h8-1": ("gated", 1, 4, 8, 1)}
                sizes = tiny if rehearse else SAMPLER_SIZES
                result["sampler"] = time_sampler(sizes, (1, 2) if rehearse else SAMPLER_BATCHES, device)
            elif name == "train_step":
                kw = dict(batch=2, size=4, channels=1, hidden=8, blocks=1) if rehearse else {}
                result["train_step"] = time_train_steps(
                    device=device, compiles=(False,) if quick else (False, True), **kw
                )
            steps.append(
                dict(step=name, status="ok", seconds=round(time.perf_counter() - start, 1), estimate_min=minutes)
            )
        except Exception as e:  # noqa: BLE001 -- one step's failure is reported, the others still run
            status = 1
            message = f"{type(e).__name__}: {e}".splitlines()[0][:200]
            print(f"!! {name} failed: {message}", flush=True)
            steps.append(
                dict(
                    step=name,
                    status="FAILED: " + message,
                    seconds=round(time.perf_counter() - start, 1),
                    estimate_min=minutes,
                )
            )
        if out:
            write_report(result, out)
    return status


def render_summary(result: dict) -> str:
    lines = ["| step | status | seconds | estimate on the H200 (min) |", "|---|---|---|---|"]
    lines += [
        f"| {r['step']} | {r['status']} | {r['seconds']} | {r['estimate_min']} |" for r in result.get("steps", [])
    ]
    return "\n".join(lines)


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
            "| conv | amp | compile | ms | images/s |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['impl']} | {r['amp']} | {r.get('compile', False)} | {r['ms']} | {r['images_per_s']} |"
            for r in result["train_step"]
        ]
    if result.get("sampler"):
        lines += ["", "Sampler, ms per batch (naive: a row prefix scaled to the image):", ""]
        lines += ["| size | batch | method | ms |", "|---|---|---|---|"]
        lines += [f"| {r['size']} | {r['batch']} | {r['method']} | {r['ms']} |" for r in result["sampler"]]
    if result.get("steps"):
        lines += ["", "Steps:", "", render_summary(result)]
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
    p.add_argument("--skip-tests", action="store_true", help="only the benchmarks")
    p.add_argument("--quick", action="store_true", help="bf16 and one layer, no --compile (a smoke run)")
    p.add_argument("--rehearse", action="store_true", help="every step on the CPU at tiny sizes (no GPU needed)")
    p.add_argument("--plan", action="store_true", help="print the plan with estimated minutes and exit")
    p.add_argument("--from-json", help="render the report of an earlier run's JSON and exit")
    a = p.parse_args(argv)
    if a.plan:
        print_plan(a.rehearse)
        return 0
    if a.from_json:
        with open(a.from_json) as f:
            print(write_report(json.load(f), a.out))
        return 0
    if a.rehearse and os.environ.get("TRITON_INTERPRET") != "1":
        # the Triton op reads TRITON_INTERPRET at import: the rehearsal runs in a child process that has it set
        env = dict(os.environ, TRITON_INTERPRET="1", PYTHONUNBUFFERED="1")
        return subprocess.run(
            [sys.executable, "-m", "benchmarks.gpu_check", *(argv or sys.argv[1:])], env=env
        ).returncode
    if not a.rehearse and not torch.cuda.is_available():
        print(
            "gpu-check: no CUDA GPU on this machine; running the static checks only (kernels compiled for "
            "sm_90/sm_80, SASS read). Run `make gpu-check` on a GPU machine, or --rehearse here."
        )
        static_checks()
        return 0
    problems = check_versions()
    if problems:
        print("gpu-check: " + "; ".join(problems), file=sys.stderr)
        return 2
    import triton

    print_plan(a.rehearse)
    result = dict(
        device="rehearsal-cpu" if a.rehearse else torch.cuda.get_device_name(),
        torch=torch.__version__,
        triton=triton.__version__,
        cuda=torch.version.cuda,
        python=platform.python_version(),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )
    status = run_plan(result, a.rehearse, a.skip_build, a.skip_tests, a.quick, a.out)
    print("wrote", write_report(result, a.out), flush=True)
    print(render_summary(result), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
