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

# the targets: (group prefix, path, compared with, minimum speedup); forward paths carry a size suffix
TARGETS = [("train_step", "compile", "eager", 1.2), ("forward", "onnxruntime", "eager", 1.3),
           ("sampling", "cached_ext", "naive", 300.0)]


def _path_name(bench: dict) -> str:
    return re.sub(r"^.*\[(.*)\]$", r"\1", bench["name"])


def target_lines(groups: dict) -> list[str]:
    """Rows ``| group | path vs base | speedup | target | met |`` for every target whose two paths were run."""
    rows = []
    for prefix, path, base, minimum in TARGETS:
        for group, items in sorted(groups.items()):
            if not group.startswith(prefix):
                continue
            medians = {_path_name(b): b["stats"]["median"] for b in items}
            for name, median in sorted(medians.items()):
                if name == path or name.startswith(path + "-"):
                    other = base + name[len(path):]
                    if other in medians and median > 0:
                        ratio = medians[other] / median
                        rows.append(f"| {group} | {name} vs {other} | {ratio:.2f}x | >= {minimum:g}x | "
                                    f"{'met' if ratio >= minimum else 'missed'} |")
    if not rows:
        return []
    return ["## Targets (same run)", "", "| group | paths | speedup | target | |", "|---|---|---:|---:|---|",
            *rows, ""]


def machine_name(data: dict) -> str:
    info = data.get("machine_info", {})
    cpu = info.get("cpu", {}).get("brand_raw") or platform.processor() or "cpu"
    cores = info.get("cpu", {}).get("count") or os.cpu_count()
    return re.sub(r"[^A-Za-z0-9]+", "-", f"cpu-{cores}core-{cpu}").strip("-").lower()


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
    lines = [f"# Benchmarks on {machine}", "",
             f"Run {data.get('datetime', '')}; python {info.get('python_version', '')}, torch "
             f"{first.get('torch', '?')}, device {first.get('device', '?')}; CPU "
             f"{info.get('cpu', {}).get('brand_raw', '?')} ({info.get('cpu', {}).get('count', '?')} logical cores).",
             "Times are medians over the rounds; speedup = reference median / path median (same run).", ""]
    lines += target_lines(groups)
    os.makedirs(out_dir, exist_ok=True)
    for group, items in sorted(groups.items()):
        ref = next((b for b in items if b["extra_info"].get("reference")), None)
        lines += [f"## {group}", "", "| path | median | IQR | throughput | peak memory | speedup vs reference |",
                  "|---|---:|---:|---:|---:|---:|"]
        names, medians = [], []
        for b in sorted(items, key=lambda b: b["stats"]["median"], reverse=True):
            s, e = b["stats"], b["extra_info"]
            name = _path_name(b)
            thr = e.get("items", 0) / s["median"] if s["median"] else 0
            speed = f"{ref['stats']['median'] / s['median']:.2f}x" if ref else "-"
            mem = f"{e['peak_mem_mb']:.0f} MB" if "peak_mem_mb" in e else "-"
            lines.append(f"| {name} | {s['median'] * 1e3:.2f} ms | {s['iqr'] * 1e3:.2f} ms | "
                         f"{thr:.1f} {e.get('unit', 'items')}/s | {mem} | {speed} |")
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
        print(f"error: {args.results!r} holds no benchmarks; run pytest --benchmark-only --benchmark-json=FILE",
              file=sys.stderr)
        return 2
    print("wrote", build_report(data, args.machine or machine_name(data), args.out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
