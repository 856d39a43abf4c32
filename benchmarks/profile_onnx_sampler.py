"""Where the ONNX sampler model's time goes (issue #22): the sampler graph's per-sub-pixel body (node count and
op-type histogram), its ONNX Runtime time per image at batch 1 and 16 beside the C++ cached sampler (``cached_ext``)
in the same process, interleaved, and ONNX Runtime's own profile (``SessionOptions.enable_profiling``) summed per
op type.

    python -m benchmarks.profile_onnx_sampler [--arch pixelcnn|gated] [--size 28x28x1] [--hidden 64] [--blocks 5]
        [--model FILE] [--rounds 3]

``--model`` profiles an existing sampler model file (exported from the same model) instead of exporting one.
Prints markdown (the tables of benchmarks/results/onnx-sampler-profile.md) naming the CPU.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time

import numpy as np
import torch

from benchmarks.conftest import cpu_description
from pixelcnn.architectures import build_model as build_arch
from pixelcnn.config import ModelConfig
from pixelcnn.sampling import draw_uniforms, sample

CONTROL_FLOW = ("Loop", "Scan", "If")


def build_model(arch: str, channels: int, size: int, hidden: int, blocks: int):
    torch.manual_seed(0)
    cfg = ModelConfig(
        channels=channels, image_size=(size, size), num_classes=10, hidden=hidden, blocks=blocks, arch=arch
    )
    model = build_arch(cfg).eval()
    with torch.no_grad():  # non-uniform output, as benchmarks/bench_sampling.py
        model.head_out.weight.normal_(0, 0.05)
    return model


def sub_pixel_body(graph, op_type=None):
    """The innermost loop body of a sampler model's graph and the op that runs it (``Scan``: once per pixel, its
    colours unrolled; ``Loop``: once per sub-pixel, as the traced graphs did)."""
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == attr.GRAPH and attr.name == "body":
                return sub_pixel_body(attr.g, node.op_type)
    return graph, op_type


def histogram(graph) -> collections.Counter:
    return collections.Counter(node.op_type for node in graph.node)


def profile_table(path: str, feeds: dict, runs: int = 1) -> list[tuple[str, int, float]]:
    """(op type, calls, total ms) per op type from ONNX Runtime's profiler over ``runs`` runs, slowest first."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(["image"], feeds)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    calls, total = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            calls[op] += 1
            total[op] += e["dur"] / 1000.0
    return sorted(((op, calls[op], total[op]) for op in total), key=lambda r: -r[2])


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def node_images_per_second(path: str, batch: int, runs: int = 3) -> float:
    """What export/examples/node/sample.js prints for one run of ``batch`` images (best of ``runs`` processes)."""
    import re
    import subprocess

    script = os.path.join(ROOT, "export", "examples", "node", "sample.js")
    out = os.path.join(tempfile.mkdtemp(), "s.pgm")
    labels = ",".join(str(k % 10) for k in range(batch))
    best = 0.0
    for _ in range(runs):
        proc = subprocess.run(
            ["node", script, "--model", path, "--labels", labels, "--seed", "0", "--out", out],
            capture_output=True,
            text=True,
            check=True,
        )
        best = max(best, float(re.search(r"\(([\d.]+) images/s", proc.stdout).group(1)))
    return best


def page_images_per_second(path: str, batch: int, runs: int = 4) -> float:
    """The web demo's own run time (``window.pixelcnn.sample``'s ``ms``) for ``batch`` images in headless Chromium,
    driven as tests/test_web.py drives it (best of ``runs`` calls after one warm-up call)."""
    import base64
    import shutil
    import subprocess

    folder = tempfile.mkdtemp()
    u = draw_uniforms((batch, *_image_shape(path)), torch.Generator().manual_seed(0)).numpy()
    args = {"labels": [k % 10 for k in range(batch)], "temperature": 1.0}
    args["uniforms_b64"] = base64.b64encode(u.tobytes()).decode()
    calls = [{"name": f"run{k}", "fn": "sample", "args": args} for k in range(runs + 1)]
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    job = {"model": path, "chromium": chromium, "out": folder, "calls": calls, "ui": False, "screenshot": None}
    job["timeout_ms"] = 1200000
    with open(os.path.join(folder, "job.json"), "w") as f:
        json.dump(job, f)
    drive = os.path.join(ROOT, "export", "examples", "web", "drive.mjs")
    subprocess.run(["node", drive, os.path.join(folder, "job.json")], check=True, capture_output=True, timeout=3600)
    with open(os.path.join(folder, "result.json")) as f:
        result = json.load(f)
    ms = [c["ms"] for c in result["calls"][1:]]
    return batch / (min(ms) / 1000.0)


def _image_shape(path: str) -> tuple[int, int, int]:
    import onnx

    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    return int(props["pixelcnn.channels"]), *json.loads(props["pixelcnn.image_size"])


def main(argv=None) -> None:
    import onnx

    from export.onnx import export_sampler_onnx
    from export.ort_sampler import OrtSampler

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="pixelcnn", choices=["pixelcnn", "gated"])
    p.add_argument("--size", default="28x28x1", help="HxWxC")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--model", help="an existing sampler model of the same model (skips the export)")
    p.add_argument("--save", help="keep the exported sampler model here")
    p.add_argument("--baseline", help="another sampler model of the same model, timed interleaved (before/after)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--js", action="store_true", help="also time the Node example and the browser page (Chromium)")
    args = p.parse_args(argv)
    h, w, c = (int(v) for v in args.size.split("x"))
    model = build_model(args.arch, c, h, args.hidden, args.blocks)

    path = args.model or args.save or os.path.join(tempfile.mkdtemp(), "sampler.onnx")
    export_s = None
    if not args.model:
        start = time.perf_counter()
        export_sampler_onnx(model, path)
        export_s = time.perf_counter() - start
    models = {"sampler model": path}
    if args.baseline:
        models = {"baseline": args.baseline, **models}
    cpu = cpu_description()
    print(f"### {args.arch} {h}x{w}x{c}, h={args.hidden}, {args.blocks} blocks — {cpu['model']}\n")
    if export_s is not None:
        print(f"export: {export_s:.1f} s\n")
    for name, file in models.items():
        graph, loop = sub_pixel_body(onnx.load(file).graph)
        hist = histogram(graph)
        body = ", ".join(f"{n} {op}" for op, n in hist.most_common())
        per = c if loop == "Scan" else 1  # a Scan body draws one pixel: C sub-pixels
        print(f"{name}: {loop} body, {sum(hist.values()) / per:.0f} nodes per sub-pixel: {body}\n")

    samplers = {name: OrtSampler(file) for name, file in models.items()}
    # the C++ op where it runs this architecture, else the Python cached sampler
    ref = "cached_ext"
    try:
        sample(model, torch.zeros(1, dtype=torch.long), 1.0, None, ref, uniforms=torch.zeros(1, c, h, w))
    except ValueError:
        ref = "cached"
    head = " | ".join(f"{name} ms/image | ratio" for name in samplers)
    print(f"| batch | {ref} ms/image | {head} |\n|---|---|" + "---|---|" * len(samplers))
    for batch in (1, 16):
        labels = torch.arange(batch) % 10
        u = draw_uniforms((batch, c, h, w), torch.Generator().manual_seed(0))
        un, ln = u.numpy(), labels.numpy()
        want = sample(model, labels, 1.0, None, ref, uniforms=u).numpy()
        agree = {name: float((s.sample(un, ln, 1.0) == want).mean()) for name, s in samplers.items()}  # + warm-up
        times = {name: [] for name in [ref, *samplers]}
        for _ in range(args.rounds):  # interleaved: the machine is shared
            for name, s in samplers.items():
                t0 = time.perf_counter()
                s.sample(un, ln, 1.0)
                times[name].append(time.perf_counter() - t0)
            # after a run ONNX Runtime's pool threads keep the cores busy for a while: timed at once (or 0.1 s
            # later), the gated op's two-thread batch-1 pipeline measured 3.4x (1.6x) slower than alone; 1 s
            # later, as fast as alone
            time.sleep(1.0)
            t0 = time.perf_counter()
            sample(model, labels, 1.0, None, ref, uniforms=u)
            times[ref].append(time.perf_counter() - t0)
        ms = {name: 1000 * min(t) / batch for name, t in times.items()}
        cells = " | ".join(f"{ms[name]:.2f} | {ms[name] / ms[ref]:.2f}x (agree {agree[name]:.4f})" for name in samplers)
        print(f"| {batch} | {ms[ref]:.2f} | {cells} |")
    print()
    if args.js:
        print("| batch | model | Node example images/s | browser page images/s (headless Chromium, wasm) |")
        print("|---|---|---|---|")
        for batch in (1, 16):
            for name, file in models.items():
                node, page = node_images_per_second(file, batch), page_images_per_second(file, batch)
                print(f"| {batch} | {name} | {node:.2f} | {page:.2f} |")
        print()
    batch = 16
    feeds = samplers["sampler model"].feeds(
        draw_uniforms((batch, c, h, w), torch.Generator().manual_seed(0)).numpy(), np.arange(batch) % 10, 1.0
    )
    for name, file in models.items():
        for b in (1, 16):
            sub = {k: v[:b] if k != "temperature" else v for k, v in feeds.items()}
            rows = profile_table(file, sub)
            # a Loop's or Scan's time includes the nodes of its body: it is the whole, not a share
            loops = [r for r in rows if r[0] in CONTROL_FLOW]
            rows = [r for r in rows if r[0] not in CONTROL_FLOW]
            total = sum(r[2] for r in rows)
            whole = max((r[2] for r in loops), default=total)
            print(
                f"{name}: ONNX Runtime profile, batch {b}, one run with profiling on: outermost loop {whole:.0f} ms, "
                f"of which {total:.0f} ms in the nodes' kernels and {whole - total:.0f} ms between them:\n"
            )
            print("| op type | calls | ms | share of kernel time |\n|---|---|---|---|")
            for op, n, t in rows:
                if t / total >= 0.005:
                    print(f"| {op} | {n} | {t:.1f} | {100 * t / total:.1f}% |")
            print()


if __name__ == "__main__":
    main()
