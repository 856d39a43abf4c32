"""``python -m export {onnx,torchscript,pt2} --checkpoint CKPT [--out FILE]`` (console script ``pixelcnn-export``).

Each subcommand writes one file atomically, loads it back and prints its parity against eager PyTorch on real MNIST
images (28x28 grey models, from ../shared/data or --data) or random images (other shapes). ``onnx --step`` and
``onnx --sampler`` export the step model and the one-call sampler model instead and check the images ONNX Runtime
draws against ``pixelcnn.sampling.sample(method="cached")`` on the same uniforms (export/README.md).
"""

from __future__ import annotations

import argparse
import os
import sys

from export.onnx import (
    DEFAULT_OPSET,
    PRECISIONS,
    ExportError,
    export_onnx,
    export_sampler_onnx,
    export_step_onnx,
    metadata,
    ort_runner,
    ort_session,
)
from export.ort_sampler import OrtSampler
from export.parity import compare, compare_sampler, compare_step, parity_inputs
from export.pt2 import export_pt2, load_pt2
from export.step import OrtStepSampler
from export.torchscript import export_torchscript, load_torchscript
from pixelcnn.checkpoint import CheckpointError, load_model
from pixelcnn.sample import add_checkpoint_flag

SUFFIX = {"onnx": ".onnx", "torchscript": ".ts.pt", "pt2": ".pt2"}


def _default_shared() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir, "shared", "data")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="format", required=True)
    for name in SUFFIX:
        s = sub.add_parser(name, help=f"export to {name}")
        add_checkpoint_flag(s)
        s.add_argument("--out", help=f"output file (default: checkpoint path with {SUFFIX[name]})")
        s.add_argument(
            "--data",
            default=os.environ.get("PIXELCNN_SHARED_DATA", _default_shared()),
            help="folder with MNIST/raw/t10k-images-idx3-ubyte.gz for the parity check",
        )
        if name == "onnx":
            s.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (18..23)")
            s.add_argument(
                "--providers",
                nargs="+",
                default=["CPUExecutionProvider"],
                help="ONNX Runtime execution providers for the parity check",
            )
            graph = s.add_mutually_exclusive_group()
            graph.add_argument(
                "--step",
                action="store_true",
                help="export the one-sub-pixel step model (caches in, logits + caches out) for "
                "runtimes that drive the sampling loop themselves, instead of the full model",
            )
            graph.add_argument(
                "--sampler",
                action="store_true",
                help="export the sampler model: whole images in one run (nested ONNX Scans over rows and "
                "pixels, the draw rule inside; completion inputs known/known_mask)",
            )
            s.add_argument(
                "--precision",
                choices=sorted(PRECISIONS),
                default="float32",
                help="--sampler: float type of the network inside the graph (the draw is float64)",
            )
    return p


def run(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    model, cfg, _ = load_model(args.checkpoint)
    step = args.format == "onnx" and args.step
    sampler = args.format == "onnx" and args.sampler
    suffix = ".step.onnx" if step else ".sampler.onnx" if sampler else SUFFIX[args.format]
    base = args.checkpoint.rstrip("/\\")  # a pretrained folder: pretrained/mnist -> pretrained/mnist.onnx
    out = args.out or (base if os.path.isdir(base) else os.path.splitext(base)[0]) + suffix
    props = metadata(model, cfg.to_dict(), cfg.config_hash())
    if sampler:
        export_sampler_onnx(model, out, args.opset, props, args.precision)
        try:
            result = compare_sampler(OrtSampler(out, args.providers), model, args.precision)
        except BaseException:
            os.remove(out)  # a model that does not run is not left behind
            raise
        result.update(path=out, bytes=os.path.getsize(out), format=f"onnx sampler model, {args.precision}")
        return result
    if step:
        export_step_onnx(model, out, args.opset, props)
        result = compare_step(OrtStepSampler(out, args.providers), model)
        result.update(path=out, bytes=os.path.getsize(out), format="onnx step model")
        return result
    image, label = parity_inputs(model, args.data if os.path.isdir(args.data) else None)
    if args.format == "onnx":
        export_onnx(model, out, args.opset, props)
        runner = ort_runner(ort_session(out, args.providers))
    elif args.format == "torchscript":
        export_torchscript(model, out)
        loaded = load_torchscript(out)
        runner = lambda x, y: loaded(x, y).detach()
    else:
        export_pt2(model, out)
        loaded = load_pt2(out)
        runner = lambda x, y: loaded(x, y).detach()
    result = compare(runner, model, image, label)
    result.update(path=out, bytes=os.path.getsize(out), format=args.format)
    return result


def main(argv=None) -> int:
    try:
        r = run(argv)
    except (CheckpointError, ExportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = "OK" if r["ok"] else "MISMATCH"
    if "known_kept" in r:
        figures = (
            f"ONNX Runtime sampler model vs sample(method='cached') on {r['batch']} images, sampling and "
            f"completion: {r['mismatched_subpixels']} of {r['subpixels']} sub-pixels differ "
            f"({r['draws_off_boundary']} draws away from a CDF boundary), known "
            f"sub-pixels {'kept' if r['known_kept'] else 'NOT kept'}"
        )
    elif "mismatched_subpixels" in r:
        figures = (
            f"ONNX Runtime step sampler vs sample(method='cached') on {r['batch']} images: "
            f"{r['mismatched_subpixels']} sub-pixels differ, max |step logit diff| "
            f"{r['max_abs_logit_diff']:.2e}"
        )
    else:
        figures = (
            f"parity vs eager on {r['batch']} images: max |logit diff| {r['max_abs_logit_diff']:.2e}, "
            f"bits/dim diff {r['bpd_diff']:.2e}"
        )
    print(f"wrote {r['path']} ({r['bytes'] / 1e6:.2f} MB, {r['format']}); {figures} -> {status}")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
