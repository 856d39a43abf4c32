"""Sampling CLI: ``python -m pixelcnn.sample --checkpoint runs/pixelcnn/best.pt [--method cached_ext] ...``.

Writes a PNG grid with ``--n-per-class`` images of every class (one class per row). With ``--complete IMAGE.png
[IMAGE.png ...] --keep-rows R`` it keeps the top R rows of each given image and samples the rest instead: one grid
row per given image, the given part first, then ``--n-per-class`` completions.

The flags that every sampling and export command shares are defined here once (``add_checkpoint_flag``,
``add_sampling_flags``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from pixelcnn.checkpoint import CheckpointError, load_model
from pixelcnn.images import read_image, save_grid
from pixelcnn.sampling import METHODS, resolve_method, sample

HIDDEN = 128  # the value that shows the unknown part of a given image in the completion grid


def add_checkpoint_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a .pt file written by pixelcnn.train, or a pretrained folder (config.json + model.safetensors, e.g. "
        "pretrained/mnist) or a Hub repo id in the local cache",
    )


def add_sampling_flags(p: argparse.ArgumentParser, seed_help: str) -> None:
    """``--temperature`` and ``--seed`` (``seed_help``: what the seed draws)."""
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature, > 0")
    p.add_argument("--seed", type=int, default=0, help=seed_help)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pixelcnn.sample", description=__doc__.split("\n\n")[0])
    add_checkpoint_flag(p)
    p.add_argument("--out", default="samples.png", help="output PNG path")
    p.add_argument(
        "--n-per-class",
        type=int,
        default=8,
        help="images per class (unconditional: images in all); with --complete: completions per image",
    )
    p.add_argument(
        "--classes",
        type=int,
        nargs="*",
        help="only these class indices (default: all); with --complete: one class per given image, or one for all",
    )
    add_sampling_flags(p, "generator seed (same seed, same images for every method)")
    p.add_argument(
        "--method",
        choices=("auto",) + METHODS,
        default="auto",
        help="naive (full forward per sub-pixel), cached (Python), cached_ext (C++/CUDA), "
        "cuda_emulated (the CUDA kernels run on the CPU, for checks); auto = fastest",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--compile",
        action="store_true",
        help="with --method naive: run the network compiled with frozen weights (pixelcnn.inference)",
    )
    p.add_argument(
        "--complete",
        nargs="+",
        metavar="IMAGE.png",
        help="complete these images (the model's size; grey or colour as the model) instead of sampling",
    )
    p.add_argument("--keep-rows", type=int, help="with --complete: the top rows kept from each image")
    return p


def completion_inputs(paths: list[str], keep_rows: int, per_image: int, channels: int, size: tuple[int, int]):
    """(given images [G, C, H, W], known [G * per_image, ...], known_mask [G * per_image, ...]) for --complete."""
    if keep_rows is None or not 0 <= keep_rows <= size[0]:
        raise ValueError(f"--complete needs --keep-rows R with 0 <= R <= {size[0]} (the image height), got {keep_rows}")
    given = torch.stack([read_image(path, channels, size) for path in paths])
    known = given.repeat_interleave(per_image, dim=0)
    mask = torch.zeros(known.shape, dtype=torch.bool)
    mask[:, :, :keep_rows] = True
    return given, known, mask


def completion_labels(classes, num_classes: int, given: int, per_image: int):
    if not num_classes:
        if classes:
            raise ValueError("this model is unconditional: pass no --classes")
        return None
    if not classes or len(classes) not in (1, given):
        raise ValueError(
            f"--complete on a class-conditional model needs --classes: one class for all {given} "
            f"image(s) or one per image"
        )
    classes = classes * given if len(classes) == 1 else classes
    return torch.tensor(classes).repeat_interleave(per_image)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.n_per_class < 1:
            raise ValueError(f"--n-per-class must be >= 1, got {args.n_per_class}")
        if not args.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {args.temperature}")
        model, _, meta = load_model(args.checkpoint, map_location=args.device)
        method = resolve_method(args.method)
        if args.compile:
            if method != "naive":
                raise ValueError(
                    f"--compile applies to --method naive (the full network per sub-pixel); "
                    f"{method} does not run the full network"
                )
            from pixelcnn.inference import compile_for_inference

            model = compile_for_inference(model)
        num_classes, per = meta["num_classes"], args.n_per_class
        if args.classes and any(not 0 <= c < max(num_classes, 1) for c in args.classes):
            raise ValueError(f"--classes must lie in 0..{num_classes - 1}, got {args.classes}")
        known = mask = given = None
        if args.complete:
            given, known, mask = completion_inputs(args.complete, args.keep_rows, per, model.channels, model.image_size)
            labels = completion_labels(args.classes, num_classes, len(given), per)
            n = len(known)
        else:
            classes = args.classes if args.classes else list(range(num_classes))
            labels = torch.tensor(classes).repeat_interleave(per) if num_classes else None
            n = per
        gen = torch.Generator(device=args.device).manual_seed(args.seed)
        t0 = time.time()
        images = sample(model, labels, args.temperature, gen, method, n=n, progress=True, known=known, known_mask=mask)
        seconds = time.time() - t0
        if given is None:
            save_grid(args.out, images, per)
        else:  # one row per given image: the kept rows (the rest grey), then its completions
            shown = given.clone()
            shown[:, :, args.keep_rows :] = HIDDEN
            rows = torch.cat([shown.unsqueeze(1), images.cpu().view(len(given), per, *images.shape[1:])], dim=1)
            save_grid(args.out, rows.flatten(0, 1), per + 1)
    except (ValueError, CheckpointError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {os.path.abspath(args.out)}: {len(images)} images with {method} in {seconds:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
