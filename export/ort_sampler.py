"""Sample with the exported step model through ONNX Runtime: numpy only, no torch at run time.

    python -m export.ort_sampler STEP.onnx --labels 0 1 2 3 --seed 0 --out samples.png
    python -m export.ort_sampler STEP.onnx --labels 7 --uniforms u.npy --out digit.npy

Same contract as ``pixelcnn.sampling.sample`` (DESIGN.md §5): sub-pixel p takes the smallest value whose cumulative
softmax of logits / temperature (float32) exceeds U[p], so for the same uniforms the image equals
``sample(method="cached")``'s (up to float32 ties at a CDF boundary, which fixed seeds in the tests do not hit).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np

from export.onnx import ExportError, ort_session
from pixelcnn.atomic import atomic_path

LEVELS = 256


def pick_values(logits: np.ndarray, u: np.ndarray, temperature: float) -> np.ndarray:
    """Inverse-CDF draw: logits ``[N, 256]``, u ``[N]`` -> uint8 ``[N]`` (numpy twin of sampling.pick_values)."""
    z = logits.astype(np.float32) / np.float32(temperature)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    cdf = np.cumsum(e / e.sum(axis=1, keepdims=True, dtype=np.float32), axis=1, dtype=np.float32)
    return np.minimum((cdf <= u[:, None]).sum(axis=1), LEVELS - 1).astype(np.uint8)


class OrtStepSampler:
    """Drives a step model written by ``python -m export onnx --step``."""

    def __init__(self, path: str, providers: Sequence[str] = ("CPUExecutionProvider",)):
        self.session = ort_session(path, providers)
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("pixelcnn.graph") != "step":
            raise ExportError(f"{path} is not a pixelcnn step model (export it with `python -m export onnx --step`)")
        self.channels = int(meta["pixelcnn.channels"])
        self.height, self.width = json.loads(meta["pixelcnn.image_size"])
        self.num_classes = int(meta["pixelcnn.num_classes"])
        self.cache_shapes = [tuple(s) for s in json.loads(meta["pixelcnn.cache_shapes"])]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def sample(self, uniforms: np.ndarray, labels: Optional[np.ndarray] = None, temperature: float = 1.0,
               on_step: Optional[Callable[[dict, np.ndarray], None]] = None) -> np.ndarray:
        """uniforms float32 ``[N, C, H, W]`` in [0, 1); labels int64 ``[N]`` -> uint8 images ``[N, C, H, W]``.

        ``on_step(feeds, logits)`` sees every step's inputs and output (parity checks run an eager twin on them).
        """
        c, h, w = self.channels, self.height, self.width
        if uniforms.ndim != 4 or uniforms.shape[1:] != (c, h, w) or uniforms.dtype != np.float32:
            raise ValueError(f"uniforms must be float32 [N, {c}, {h}, {w}], got {uniforms.dtype} {uniforms.shape}")
        n = uniforms.shape[0]
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if self.num_classes:
            if labels is None or labels.shape != (n,):
                raise ValueError(f"labels must be int64 [{n}] in 0..{self.num_classes - 1} for this model")
            if labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(f"labels must lie in 0..{self.num_classes - 1}")
        feeds = {"last": np.zeros(n, np.uint8)}
        if self.num_classes:  # an unconditional step model has no label input
            feeds["label"] = labels.astype(np.int64)
        feeds.update({f"cache_{k}": np.zeros((*s, n), np.float32) for k, s in enumerate(self.cache_shapes)})
        image = np.zeros((n, c, h, w), np.uint8)
        for i in range(h):
            for j in range(w):
                for k in range(c):
                    feeds["position"] = np.array([i, j, k], np.int64)
                    logits, *caches = self.session.run(self.outputs, feeds)
                    if on_step is not None:
                        on_step(feeds, logits)
                    value = pick_values(logits, uniforms[:, k, i, j], temperature)
                    image[:, k, i, j] = value
                    feeds["last"] = value
                    feeds.update({f"cache_{q}": x for q, x in enumerate(caches)})
        return image


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.ort_sampler", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="step model written by `python -m export onnx --step`")
    p.add_argument("--labels", type=int, nargs="+", help="one class per image (class-conditional models)")
    p.add_argument("--n", type=int, help="number of images (unconditional models)")
    p.add_argument("--seed", type=int, default=0, help="seed for the uniforms (numpy; ignored with --uniforms)")
    p.add_argument("--uniforms", help=".npy float32 [N, C, H, W] in [0, 1) (overrides --seed)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--providers", nargs="+", default=["CPUExecutionProvider"])
    p.add_argument("--out", required=True, help=".npy (uint8 [N, C, H, W]) or .png (one row of images)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sampler = OrtStepSampler(args.model, args.providers)
        labels = np.asarray(args.labels, np.int64) if args.labels else None
        n = len(labels) if labels is not None else args.n
        if n is None:
            raise ValueError("pass --labels (class-conditional model) or --n (unconditional model)")
        if args.uniforms:
            uniforms = np.load(args.uniforms)
        else:
            shape = (n, sampler.channels, sampler.height, sampler.width)
            uniforms = np.random.default_rng(args.seed).random(shape, dtype=np.float32)
        start = time.perf_counter()
        image = sampler.sample(uniforms, labels, args.temperature)
        seconds = time.perf_counter() - start
        _save(image, args.out)
    except (ExportError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {image.shape[0]} images in {seconds:.2f} s ({image.shape[0] / seconds:.2f} images/s)")
    return 0


def _save(image: np.ndarray, out: str) -> None:
    ext = os.path.splitext(out)[1].lower()
    if ext not in (".npy", ".png"):
        raise ValueError(f"--out must end in .npy or .png, got {out!r}")
    with atomic_path(out) as tmp:
        if ext == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, image)
        else:
            from PIL import Image
            row = np.concatenate(list(image.transpose(0, 2, 3, 1)), axis=1)  # [H, N*W, C]
            Image.fromarray(row[..., 0] if row.shape[2] == 1 else row).save(tmp, format="PNG")


if __name__ == "__main__":
    sys.exit(main())
