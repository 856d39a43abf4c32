"""Sample with the exported sampler model through ONNX Runtime: one ``run`` per batch of whole images.

    python -m export onnx --checkpoint runs/pixelcnn/best.pt --sampler      # -> runs/pixelcnn/best.sampler.onnx
    python -m export.ort_sampler best.sampler.onnx --labels 0 1 2 3 --seed 0 --out samples.png
    python -m export.ort_sampler best.sampler.onnx --labels 7 --uniforms u.npy --out digit.npy
    python -m export.ort_sampler best.sampler.onnx --labels 3 3 --complete known.npy --keep-rows 10 --out c.png

``OrtSampler(path).sample(uniforms, labels, temperature, known, known_mask)`` checks its inputs (the graph cannot
raise errors) and feeds the model's inputs ``label``, ``uniforms``, ``temperature``, ``known``, ``known_mask``
(``export/sampler.py`` has the interface). Same contract as ``pixelcnn.sampling.sample`` (docs/DESIGN.md §5): for
the same uniforms the image equals ``sample(method="cached", temperature=float(np.float32(T)))``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Optional

import numpy as np

from export.onnx import ExportError, ort_session
from pixelcnn.atomic import atomic_path
from pixelcnn.sample import add_sampling_flags


class OrtSampler:
    """Runs a sampler model written by ``python -m export onnx --sampler``."""

    def __init__(self, path: str, providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 0):
        self.session = ort_session(path, providers, threads)
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("pixelcnn.graph") != "sampler":
            raise ExportError(
                f"{path} is not a pixelcnn sampler model (export it with "
                f"`python -m export onnx --checkpoint CKPT --sampler`)"
            )
        self.channels = int(meta["pixelcnn.channels"])
        self.height, self.width = json.loads(meta["pixelcnn.image_size"])
        self.num_classes = int(meta["pixelcnn.num_classes"])
        self.precision = meta.get("pixelcnn.precision", "float32")
        self.inputs = [i.name for i in self.session.get_inputs()]

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width

    def feeds(
        self,
        uniforms: np.ndarray,
        labels: Optional[np.ndarray] = None,
        temperature: float = 1.0,
        known: Optional[np.ndarray] = None,
        known_mask: Optional[np.ndarray] = None,
    ) -> dict:
        """The checked inputs of one run (ValueError naming the problem otherwise)."""
        c, h, w = self.shape
        if (
            not isinstance(uniforms, np.ndarray)
            or uniforms.ndim != 4
            or uniforms.shape[1:] != (c, h, w)
            or uniforms.dtype != np.float32
        ):
            got = f"{uniforms.dtype} {uniforms.shape}" if isinstance(uniforms, np.ndarray) else type(uniforms)
            raise ValueError(f"uniforms must be float32 [N, {c}, {h}, {w}], got {got}")
        n = uniforms.shape[0]
        if n < 1:
            raise ValueError("uniforms must hold at least one image (N >= 1)")
        if not (uniforms.min() >= 0.0 and uniforms.max() < 1.0):
            raise ValueError(f"uniforms must lie in [0, 1), got range [{uniforms.min()}, {uniforms.max()}]")
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be > 0, got {temperature}")
        feeds = {"uniforms": uniforms, "temperature": np.array(temperature, np.float32)}
        if self.num_classes:
            labels = None if labels is None else np.asarray(labels)
            if labels is None or labels.shape != (n,) or labels.dtype.kind not in "iu":
                got = "none" if labels is None else f"{labels.dtype} {labels.shape}"
                raise ValueError(
                    f"labels must be int64 [{n}] in 0..{self.num_classes - 1} for this "
                    f"class-conditional model, got {got}"
                )
            if labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(
                    f"labels must lie in 0..{self.num_classes - 1}, got range [{labels.min()}, {labels.max()}]"
                )
            feeds["label"] = labels.astype(np.int64)
        elif labels is not None:
            raise ValueError("this model is unconditional (num_classes=0): pass no labels")
        if (known is None) != (known_mask is None):
            raise ValueError("pass both known (uint8 [N, C, H, W]) and known_mask (bool [N, C, H, W]), or neither")
        if known is None:
            known, known_mask = np.zeros(uniforms.shape, np.uint8), np.zeros(uniforms.shape, bool)
        for name, x, dtype in (("known", known, np.uint8), ("known_mask", known_mask, np.bool_)):
            if not isinstance(x, np.ndarray) or x.shape != uniforms.shape or x.dtype != dtype:
                got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x)
                raise ValueError(
                    f"{name} must be {np.dtype(dtype).name} {list(uniforms.shape)} (the uniforms' shape), got {got}"
                )
        feeds.update(known=known, known_mask=known_mask)
        return {name: feeds[name] for name in self.inputs}

    def sample(
        self,
        uniforms: np.ndarray,
        labels: Optional[np.ndarray] = None,
        temperature: float = 1.0,
        known: Optional[np.ndarray] = None,
        known_mask: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        """uniforms float32 ``[N, C, H, W]`` in [0, 1); labels int64 ``[N]`` (class-conditional models); optional
        completion inputs -> uint8 images ``[N, C, H, W]``, in one ONNX Runtime run."""
        return self.session.run(["image"], self.feeds(uniforms, labels, temperature, known, known_mask))[0]


def keep_rows(images: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Completion inputs that keep the top ``rows`` rows of uint8 ``images`` [N, C, H, W]."""
    if not 0 <= rows <= images.shape[2]:
        raise ValueError(f"--keep-rows must lie in 0..{images.shape[2]} (the image height), got {rows}")
    mask = np.zeros(images.shape, bool)
    mask[:, :, :rows] = True
    return images, mask


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m export.ort_sampler", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="sampler model written by `python -m export onnx --sampler`")
    p.add_argument("--labels", type=int, nargs="+", help="one class per image (class-conditional models)")
    p.add_argument("--n", type=int, help="number of images (unconditional models)")
    add_sampling_flags(p, "seed for the uniforms (numpy; ignored with --uniforms)")
    p.add_argument("--uniforms", help=".npy float32 [N, C, H, W] in [0, 1) (overrides --seed)")
    p.add_argument("--complete", help=".npy uint8 [N, C, H, W]: images whose top --keep-rows rows are kept")
    p.add_argument("--keep-rows", type=int, default=0, help="rows of --complete kept (the rest is sampled)")
    p.add_argument("--providers", nargs="+", default=["CPUExecutionProvider"])
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: one per core)")
    p.add_argument("--out", required=True, help=".npy (uint8 [N, C, H, W]) or .png (one row of images)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ext = os.path.splitext(args.out)[1].lower()
        if ext not in (".npy", ".png"):
            raise ValueError(f"--out must end in .npy or .png, got {args.out!r}")
        if args.threads < 0:
            raise ValueError(f"--threads must be >= 0, got {args.threads}")
        sampler = OrtSampler(args.model, args.providers, args.threads)
        labels = np.asarray(args.labels, np.int64) if args.labels else None
        n = len(labels) if labels is not None else args.n
        if n is None:
            raise ValueError("pass --labels (class-conditional model) or --n (unconditional model)")
        if args.uniforms:
            uniforms = np.load(args.uniforms)
        else:
            uniforms = np.random.default_rng(args.seed).random((n, *sampler.shape), dtype=np.float32)
        known = mask = None
        if args.complete:
            known, mask = keep_rows(np.load(args.complete), args.keep_rows)
        start = time.perf_counter()
        image = sampler.sample(uniforms, labels, args.temperature, known, mask)
        seconds = time.perf_counter() - start
        _save(image, args.out, ext)
    except (ExportError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {image.shape[0]} images in {seconds:.2f} s ({image.shape[0] / seconds:.2f} images/s)")
    return 0


def _save(image: np.ndarray, out: str, ext: str) -> None:
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
