"""``python -m benchmarks.report RESULTS.json [--machine NAME]``: a markdown table per benchmark group (median,
IQR, throughput, peak memory, speedup vs the group's reference) and a PNG bar chart per group, written to
``benchmarks/results/<machine>.md`` and ``benchmarks/results/<machine>-<group>.png``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from collections import defaultdict

from pixelcnn.atomic import atomic_write_text

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# the targets, measured in one run: (metric, group, path, compared with, minimum ratio of the base's median
# time to the path's); "within 10 % of ONNX Runtime" is onnxruntime time / compile time >= 1 / 1.1
FORWARD_GROUPS = ("forward 28x28x1", "forward 32x32x3")
TARGETS = [
    *(("eager forward vs reference", g, "eager", "reference", 1.3) for g in FORWARD_GROUPS),
    *(("compiled forward vs reference", g, "compile", "reference", 1.8) for g in FORWARD_GROUPS),
    *(("compiled forward within 10 % of ONNX Runtime", g, "compile", "onnxruntime", 1 / 1.1) for g in FORWARD_GROUPS),
    *(("ONNX Runtime forward vs reference", g, "onnxruntime", "reference", 2.0) for g in FORWARD_GROUPS),
    ("compiled train step vs reference train step", "train_step 28x28x1", "compile", "reference", 1.5),
    ("cached_ext vs naive, batch 16", "sampling batch 16", "cached_ext", "naive", 600.0),
    ("cached_ext vs naive, batch 1", "sampling batch 1", "cached_ext", "naive", 300.0),
    # issue 16: the one-call ONNX sampler model against the step-model driver and the C++ sampler
    *(
        (f"ONNX sampler vs ONNX step driver, batch {b}", f"sampling batch {b}", "onnx_sampler", "onnx_step", 3.0)
        for b in (1, 16)
    ),
    *(
        (f"ONNX sampler within 2x of cached_ext, batch {b}", f"sampling batch {b}", "onnx_sampler", "cached_ext", 0.5)
        for b in (1, 16)
    ),
]


def path_name(bench: dict) -> str:
    """The path a benchmark timed: its ``extra_info["path"]``, else the test's parameter id."""
    return bench.get("extra_info", {}).get("path") or re.sub(r"^.*\[(.*)\]$", r"\1", bench["name"])


def target_lines(groups: dict) -> list[str]:
    """The targets table: one row per target, "not run" where the run lacks one of its two paths."""
    rows = []
    for metric, group, path, base, minimum in TARGETS:
        benches = {path_name(b): b for b in groups.get(group, [])}
        medians = {name: b["stats"]["median"] for name, b in benches.items()}
        if path in medians and base in medians and medians[path] > 0:
            ratio, how = medians[base] / medians[path], "medians"
            paired = {name: b.get("extra_info", {}).get("paired_speedup") for name, b in benches.items()}
            if paired[path] and benches[base].get("extra_info", {}).get("reference"):
                ratio, how = paired[path], "paired"
            elif paired[path] and paired[base]:  # both paired with the group's reference: their quotient
                ratio, how = paired[path] / paired[base], "paired, via reference"
            verdict = "met" if ratio >= minimum else "missed"
            rows.append(
                f"| {metric} | {group} | {path} vs {base} | {ratio:.2f}x ({how}) | >= {minimum:.2f}x | {verdict} |"
            )
        else:
            rows.append(f"| {metric} | {group} | {path} vs {base} | - | >= {minimum:.2f}x | not run |")
    return [
        "## Targets (same run)",
        "",
        "| metric | group | paths | speedup | target | |",
        "|---|---|---|---:|---:|---|",
        *rows,
        "",
    ]


def local_cpu() -> dict:
    """This machine's CPU, for results written before the benchmarks recorded it."""
    from benchmarks.conftest import cpu_description

    return cpu_description()


def cpu_of(data: dict) -> dict:
    info = data.get("machine_info", {})
    cpu = dict(info.get("pixelcnn_cpu") or {})
    if not cpu.get("model"):
        cpu.update(
            model=info.get("cpu", {}).get("brand_raw") or local_cpu()["model"],
            logical_cores=info.get("cpu", {}).get("count") or os.cpu_count(),
        )
    return cpu


def machine_name(data: dict) -> str:
    cpu = cpu_of(data)
    return _slug(f"cpu-{cpu.get('logical_cores') or os.cpu_count()}core-{cpu['model'] or platform.machine()}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def build_report(data: dict, machine: str, out_dir: str = RESULTS) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"] or "ungrouped"].append(b)
    info = data.get("machine_info", {})
    first = data["benchmarks"][0]["extra_info"] if data["benchmarks"] else {}
    cpu = cpu_of(data)
    flags = ", ".join(cpu.get("vector_flags") or []) or "not recorded"
    gpu = info.get("pixelcnn_gpu")
    lines = [
        f"# Benchmarks on {machine}",
        "",
        f"Run {data.get('datetime', '')}; python {info.get('python_version', '')}, torch "
        f"{first.get('torch', '?')}, device {first.get('device', '?')}.",
        f"CPU: **{cpu['model']}**, {cpu.get('logical_cores', '?')} logical cores, torch threads "
        f"{cpu.get('torch_threads', '?')}; vector extensions: {flags}." + (f" GPU: **{gpu}**." if gpu else ""),
        "Times are medians over the rounds; speedup = the group's reference median / path median (same run). "
        "The reference is the textbook PixelCNN of `benchmarks/reference.py` (forward, train step) and naive "
        "sampling on it (sampling). Paired = the median over the rounds of reference time / path time with the two "
        "run alternately in the path's test (forward and train-step groups): this machine's speed drifts over "
        "minutes, which a ratio of medians timed one after the other picks up; the targets use it where it exists.",
        "Architectures side by side: `gated-<path>` rows are the gated PixelCNN (`--arch gated`) at the PixelCNN's "
        "live parameter count (`benchmarks/bench_forward.py` GATED) through the same path; their speedup and paired "
        "columns are against the textbook PixelCNN of the group.",
        "",
    ]
    lines += target_lines(groups)
    os.makedirs(out_dir, exist_ok=True)
    for group, items in sorted(groups.items()):
        ref = next((b for b in items if b["extra_info"].get("reference")), None)
        lines += [
            f"## {group}",
            "",
            "| path | median | IQR | throughput | peak memory | speedup vs reference | paired |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        names, medians = [], []
        for b in sorted(items, key=lambda b: b["stats"]["median"], reverse=True):
            s, e = b["stats"], b["extra_info"]
            name = path_name(b)
            thr = e.get("items", 0) / s["median"] if s["median"] else 0
            speed = f"{ref['stats']['median'] / s['median']:.2f}x" if ref else "-"
            mem = f"{e['peak_mem_mb']:.0f} MB" if "peak_mem_mb" in e else "-"
            paired = f"{e['paired_speedup']:.2f}x" if "paired_speedup" in e else "-"
            lines.append(
                f"| {name} | {s['median'] * 1e3:.2f} ms | {s['iqr'] * 1e3:.2f} ms | "
                f"{thr:.1f} {e.get('unit', 'items')}/s | {mem} | {speed} | {paired} |"
            )
            names.append(name)
            medians.append(s["median"] * 1e3)
        lines.append("")
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.45 * len(names)))
        ax.barh(names, medians, color="tab:blue")
        ax.set_xscale("log")
        ax.set_xlabel("median time per call (ms, log scale)")
        ax.set_title(f"{group} — {machine}")
        fig.tight_layout()
        png = f"{machine}-{_slug(group)}.png"
        fig.savefig(os.path.join(out_dir, png), dpi=90)
        plt.close(fig)
        lines += [f"![{group}]({png})", ""]
    path = os.path.join(out_dir, f"{machine}.md")
    atomic_write_text(path, "\n".join(lines))
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    p.add_argument("results", help="JSON written by pytest --benchmark-json")
    p.add_argument("--machine", help="name for the output files (default: derived from the CPU)")
    p.add_argument("--out-dir", default=RESULTS)
    args = p.parse_args(argv)
    try:
        with open(args.results) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        print(f"error: cannot read benchmark results {args.results!r}: {e}", file=sys.stderr)
        return 2
    if not data.get("benchmarks"):
        print(
            f"error: {args.results!r} holds no benchmarks; run pytest --benchmark-only --benchmark-json=FILE",
            file=sys.stderr,
        )
        return 2
    print("wrote", build_report(data, args.machine or machine_name(data), args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
