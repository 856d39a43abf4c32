"""Sampling CLI: ``python -m pixelcnn.sample --checkpoint runs/pixelcnn/best.pt [--method cached_ext] ...``.

Writes a PNG grid with ``--n-per-class`` images of every class (one class per row).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from pixelcnn.checkpoint import CheckpointError, load_model
from pixelcnn.sampling import METHODS, resolve_method, sample
from pixelcnn.train import save_grid


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pixelcnn.sample", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a .pt file written by pixelcnn.train")
    p.add_argument("--out", default="samples.png", help="output PNG path")
    p.add_argument("--n-per-class", type=int, default=8, help="images per class (unconditional: images in all)")
    p.add_argument("--classes", type=int, nargs="*", help="only these class indices (default: all)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature, > 0")
    p.add_argument("--method", choices=("auto",) + METHODS, default="auto",
                   help="naive (full forward per sub-pixel), cached (Python), cached_ext (C++/CUDA), "
                        "cuda_emulated (the CUDA kernels run on the CPU, for checks); auto = fastest")
    p.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same images for every method)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args(argv)
    try:
        if args.n_per_class < 1:
            raise ValueError(f"--n-per-class must be >= 1, got {args.n_per_class}")
        if not args.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {args.temperature}")
        model, _, meta = load_model(args.checkpoint, map_location=args.device)
        method = resolve_method(args.method)
        classes = args.classes if args.classes else list(range(meta["num_classes"]))
        if any(not 0 <= c < meta["num_classes"] for c in classes):
            raise ValueError(f"--classes must lie in 0..{meta['num_classes'] - 1}, got {classes}")
        labels = torch.tensor(classes).repeat_interleave(args.n_per_class) if meta["num_classes"] else None
        gen = torch.Generator(device=args.device).manual_seed(args.seed)
        t0 = time.time()
        images = sample(model, labels, args.temperature, gen, method, n=args.n_per_class, progress=True)
        seconds = time.time() - t0
        save_grid(args.out, images, args.n_per_class)
    except (ValueError, CheckpointError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {os.path.abspath(args.out)}: {len(images)} images with {method} in {seconds:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
