"""Training CLI: ``python -m pixelcnn.train [--compile] [--dataset mnist --data-dir DIR] ...``.

Writes under ``<save-dir>/<model-name>/``: config.json, last.pt (every epoch and every --checkpoint-every steps),
best.pt (lowest test bits/dim), metrics.csv, samples/epoch_XXX.png and loss_curve.png. Runs under
``torchrun --nproc_per_node=N`` with DistributedDataParallel; only rank 0 writes files.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import random
import sys
import time
from dataclasses import dataclass, fields
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist

from pixelcnn.atomic import atomic_write, atomic_write_text
from pixelcnn.checkpoint import (CheckpointError, build_model, check_compatible, checkpoint_config, load_checkpoint,
                                 rng_state, save_checkpoint, set_rng_state)
from pixelcnn.config import CONVS, DATASETS, DEVICES, SAMPLE_METHODS, Config
from pixelcnn.cpu_allocator import keep_heap
from pixelcnn.data import DataError, ImageData, load_data, make_loader
from pixelcnn.likelihood import nll_nats
from pixelcnn.sampling import resolve_method, sample

METRIC_FIELDS = ("epoch", "step", "train_bpd", "test_bpd", "lr", "images_per_s", "seconds")


class TrainingError(RuntimeError):
    """Training stopped for a reason the user can act on (message says which)."""


# --- command line -------------------------------------------------------------------------------------------
_HELP = {
    "dataset": "digits (embedded, offline), mnist, fashion-mnist, cifar10, or folder (an ImageFolder tree)",
    "data_dir": "root folder of the dataset files (torchvision layout, or the ImageFolder root)",
    "download": "let torchvision download mnist / fashion-mnist / cifar10 into --data-dir",
    "channels": "folder datasets: 1 = greyscale, 3 = RGB (default 3); other datasets use their own",
    "img_size": "resize images to N x N (0 = keep the native size)",
    "train_limit": "use only the first N training images (0 = all)",
    "test_limit": "use only the first N test images (0 = all)",
    "num_workers": "DataLoader worker processes",
    "hidden_channels": "h: residual blocks carry 2h channels, their masked 3x3 convs h",
    "residual_blocks": "number of residual blocks",
    "kernel_size": "k0: size of the first (mask A) convolution, odd",
    "batch_size": "images per optimiser step (per process under torchrun)",
    "epochs": "number of epochs",
    "lr": "Adam learning rate",
    "weight_decay": "Adam weight decay",
    "lr_factor": "ReduceLROnPlateau factor (on test bits/dim)",
    "lr_patience": "ReduceLROnPlateau patience in epochs",
    "max_steps": "stop after this many optimiser steps in total (0 = no limit)",
    "grad_clip": "clip the gradient norm to this value (0 = off)",
    "temperature": "softmax temperature of the per-epoch samples (> 0)",
    "n_per_class": "samples per class in each epoch's sample grid",
    "sample_method": "sampler for the per-epoch grids: naive, cached, cached_ext, or auto (fastest available)",
    "save_dir": "folder for run outputs",
    "model_name": "run name: outputs go to <save-dir>/<model-name>/",
    "seed": "seed of the data order, initialisation and sampling",
    "device": "auto (cuda > mps > cpu), cpu, cuda or mps",
    "compile": "torch.compile the model for training",
    "amp": "bfloat16 autocast (CUDA only)",
    "conv": "masked-conv implementation: reference (F.conv2d), triton (fused kernel), auto (triton on CUDA)",
    "checkpoint_every": "also write last.pt every N optimiser steps (0 = once per epoch)",
}
_CHOICES = {"dataset": DATASETS, "device": DEVICES, "conv": CONVS, "sample_method": SAMPLE_METHODS,
            "channels": (0, 1, 3)}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pixelcnn.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                argument_default=argparse.SUPPRESS)
    defaults = Config()
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if f.type in (bool, "bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=f"{_HELP[f.name]} (default {default})")
        else:
            kind = {"int": int, "float": float, "str": str}.get(f.type, f.type)
            p.add_argument(flag, type=kind, choices=_CHOICES.get(f.name), help=f"{_HELP[f.name]} (default {default})")
    p.add_argument("--config", dest="config_file", metavar="FILE.json", help="JSON file of config keys; flags "
                   "given on the command line override it")
    p.add_argument("--resume", nargs="?", const="", metavar="CKPT", help="continue the run from CKPT (default "
                   "<save-dir>/<model-name>/last.pt) with its config; flags given here override it")
    return p


def parse_args(argv=None) -> tuple[Config, Optional[str]]:
    """Config from: defaults < --config FILE < the resumed checkpoint's config < explicit flags."""
    args = vars(build_parser().parse_args(argv))
    config_file = args.pop("config_file", None)
    resume = args.pop("resume", None)
    base = Config.load(config_file).to_dict() if config_file else Config().to_dict()
    if resume is not None:
        probe = Config.from_dict({**base, **args})
        path = resume or os.path.join(probe.save_dir, probe.model_name, "last.pt")
        base = checkpoint_config(load_checkpoint(path), path).to_dict()
        resume = path
    return Config.from_dict({**base, **args}, source="command line"), resume


# --- pieces reused by tests ----------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Dist:
    """Join the process group that torchrun describes in the environment (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    backend = "nccl" if device == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
    return Dist(dist.get_rank(), dist.get_world_size(), local)


def resolve_device(name: str, ddp: Optional[Dist] = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise TrainingError("--device mps was asked for but MPS is not available; use --device cpu or auto")
    if name == "cuda" and ddp is not None:
        return torch.device("cuda", ddp.local_rank)
    return torch.device(name)


def resolve_conv(conv: str, device: torch.device) -> str:
    if conv == "auto":
        return "triton" if device.type == "cuda" else "reference"
    return conv


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def loss_fn(model, images: torch.Tensor, labels: Optional[torch.Tensor], amp: bool) -> torch.Tensor:
    """Mean NLL in nats per sub-pixel of a batch (bf16 autocast when ``amp`` on CUDA)."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        logits = model(images, labels)
    return nll_nats(logits, images)


@torch.no_grad()
def evaluate(model, images: torch.Tensor, labels: Optional[torch.Tensor], batch_size: int, device: torch.device,
             ddp: Dist, amp: bool = False) -> float:
    """Test bits/dim over this process's shard (every world_size-th image), all-reduced across processes."""
    was = model.training
    model.eval()
    idx = torch.arange(ddp.rank, len(images), ddp.world_size)
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for s in range(0, len(idx), batch_size):
        b = idx[s:s + batch_size]
        x, y = images[b].to(device), labels[b].to(device) if labels is not None else None
        total[0] += float(loss_fn(model, x, y, amp)) * len(b)
        total[1] += len(b)
    if ddp.world_size > 1:
        dist.all_reduce(total)
    model.train(was)
    return float(total[0] / total[1]) / math.log(2.0)


# --- outputs -------------------------------------------------------------------------------------------------
def write_metrics(path: str, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS)
    w.writeheader()
    for r in rows:
        w.writerow({k: r[k] for k in METRIC_FIELDS})
    atomic_write_text(path, buf.getvalue())


def write_curve(path: str, rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [r["epoch"] for r in rows]
    ax.plot(epochs, [r["train_bpd"] for r in rows], "o-", label="train")
    ax.plot(epochs, [r["test_bpd"] for r in rows], "s-", label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("bits / dim")
    ax.set_title("PixelCNN negative log-likelihood")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def write_samples(path: str, model, cfg: Config, data: ImageData, device: torch.device, epoch: int) -> str:
    method = resolve_method(cfg.sample_method)
    if method == "cached_ext" and device.type not in ("cpu", "cuda"):
        method = "cached"
    labels = torch.arange(data.num_classes).repeat_interleave(cfg.n_per_class) if data.num_classes else None
    g = torch.Generator(device=device.type if device.type == "cuda" else "cpu").manual_seed(cfg.seed * 1000 + epoch)
    images = sample(model, labels, cfg.temperature, g, method, n=cfg.n_per_class)
    save_grid(path, images, cfg.n_per_class)
    return method


def save_grid(path: str, images: torch.Tensor, nrow: int) -> None:
    """uint8 ``[N, C, H, W]`` -> PNG grid, ``nrow`` images per row, small images enlarged (nearest) to >= 32 px."""
    from torchvision.utils import make_grid, save_image
    x = images.float().cpu() / 255.0
    scale = max(1, 32 // x.shape[-1])
    if scale > 1:
        x = torch.nn.functional.interpolate(x, scale_factor=scale, mode="nearest")
    grid = make_grid(x, nrow=nrow, padding=2, pad_value=0.5)
    atomic_write(path, lambda tmp: save_image(grid, tmp, format="png"))


# --- the run -------------------------------------------------------------------------------------------------
def train(cfg: Config, resume: Optional[str] = None) -> dict:
    """Run training as configured; returns the final metrics row plus the run folder."""
    cfg.validate()
    ddp = setup_distributed("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    device = resolve_device(cfg.device, ddp)
    conv = resolve_conv(cfg.conv, device)
    amp = cfg.amp and device.type == "cuda"
    run_dir = os.path.join(cfg.save_dir, cfg.model_name)
    seed_everything(cfg.seed)

    data = load_data(cfg)
    meta = {"channels": data.channels, "image_size": list(data.image_size), "num_classes": data.num_classes,
            "class_names": data.class_names}
    model = build_model(cfg, meta).to(device).set_conv_impl(conv)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.lr_factor,
                                                           patience=cfg.lr_patience)
    start_epoch, epoch_step, step, best, history, partial = 0, 0, 0, float("inf"), [], None
    if resume:
        state = load_checkpoint(resume, map_location=device)
        check_compatible(state, cfg, resume)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        for g in optimizer.param_groups:  # a resumed run may be given a new --lr
            g.setdefault("initial_lr", g["lr"])
        set_rng_state(state.get("rng"))
        start_epoch, epoch_step, step = state["epoch"], state["epoch_step"], state["step"]
        best, history, partial = state["best"], list(state["history"]), state.get("partial")
    if ddp.main:
        os.makedirs(os.path.join(run_dir, "samples"), exist_ok=True)
        for folder in (run_dir, os.path.join(run_dir, "samples")):  # temp files of a run killed mid-write
            for name in os.listdir(folder):
                if name.startswith(".tmp-"):
                    os.unlink(os.path.join(folder, name))
        cfg.save(os.path.join(run_dir, "config.json"))
        n_params = sum(p.numel() for p in model.parameters())
        print(f"PixelCNN: {n_params:,} parameters | device {device} | conv {conv} | compile {cfg.compile} | "
              f"data {cfg.dataset} {data.channels}x{data.image_size[0]}x{data.image_size[1]}, "
              f"{len(data.train_labels)} train / {len(data.test_labels)} test images, {data.num_classes} classes"
              f"{' | world size ' + str(ddp.world_size) if ddp.world_size > 1 else ''}"
              f"{f' | resumed at epoch {start_epoch + 1} step {step}' if resume else ''}", flush=True)

    net = model
    if ddp.world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    if cfg.compile:
        net = torch.compile(net)
    loader = make_loader(data.train_images, data.train_labels, cfg.batch_size, True, cfg.seed, cfg.num_workers,
                         device.type == "cuda", ddp.rank, ddp.world_size)
    use_labels = data.num_classes > 0

    def save_last(epoch: int, epoch_step: int, partial: Optional[dict], also_best: bool = False) -> None:
        if not ddp.main:
            return
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise TrainingError(f"the weights became NaN/Inf by step {step}; training stopped and the last good "
                                f"checkpoint ({run_dir}/last.pt) was kept. Lower --lr or set --grad-clip")
        state = {
            "config": cfg.to_dict(), "data": meta, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": rng_state(), "epoch": epoch, "epoch_step": epoch_step,
            "step": step, "best": best, "history": history, "partial": partial}
        save_checkpoint(os.path.join(run_dir, "last.pt"), state)
        if also_best:
            save_checkpoint(os.path.join(run_dir, "best.pt"), state)

    from tqdm import tqdm
    last = history[-1] if history else None
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps and step >= cfg.max_steps:
            break
        loader.sampler.set_epoch(epoch)
        model.train()
        nats, seen, t0 = (partial["nats"], partial["seen"], time.time() - partial["seconds"]) if partial else \
            (0.0, 0, time.time())
        partial = None
        batches = iter(loader)
        for _ in range(epoch_step):  # a resumed epoch skips the batches it already trained on
            next(batches)
        bar = tqdm(batches, total=len(loader), initial=epoch_step, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not ddp.main or None, leave=False, dynamic_ncols=True)
        for images, labels in bar:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True) if use_labels else None
            loss = loss_fn(net, images, labels, amp)
            if not torch.isfinite(loss):
                raise TrainingError(f"loss became {float(loss.detach())} at epoch {epoch + 1}, step {step + 1}; "
                                    f"training stopped and the last good checkpoint ({run_dir}/last.pt) was kept. Lower "
                                    f"--lr (now {optimizer.param_groups[0]['lr']:g}) or set --grad-clip")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            epoch_step += 1
            batch_nats = loss.detach().double() * len(images)
            if ddp.world_size > 1:
                pair = torch.stack([batch_nats, torch.tensor(float(len(images)), dtype=torch.float64,
                                                             device=device)])
                dist.all_reduce(pair)
                batch_nats, count = pair[0], int(pair[1])
            else:
                count = len(images)
            nats += float(batch_nats)
            seen += count
            bar.set_postfix(bpd=f"{nats / seen / math.log(2):.3f}")
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save_last(epoch, epoch_step, {"nats": nats, "seen": seen, "seconds": time.time() - t0})
            if cfg.max_steps and step >= cfg.max_steps:
                break
        bar.close()
        seconds = time.time() - t0
        train_bpd = nats / max(seen, 1) / math.log(2.0)
        test_bpd = evaluate(model, data.test_images, data.test_labels if use_labels else None, cfg.batch_size,
                            device, ddp, amp)
        scheduler.step(test_bpd)
        last = {"epoch": epoch + 1, "step": step, "train_bpd": round(train_bpd, 5), "test_bpd": round(test_bpd, 5),
                "lr": optimizer.param_groups[0]["lr"], "images_per_s": round(seen / max(seconds, 1e-9), 1),
                "seconds": round(seconds, 2)}
        history.append(last)
        improved = test_bpd < best
        best = min(best, test_bpd)
        epoch_step = 0
        if ddp.main:
            method = write_samples(os.path.join(run_dir, "samples", f"epoch_{epoch + 1:03d}.png"), model, cfg,
                                   data, device, epoch + 1)
            save_last(epoch + 1, 0, None, also_best=improved)
            write_metrics(os.path.join(run_dir, "metrics.csv"), history)
            write_curve(os.path.join(run_dir, "loss_curve.png"), history)
            print(f"epoch {epoch + 1}/{cfg.epochs}  step {step}  train {train_bpd:.4f}  test {test_bpd:.4f} "
                  f"bits/dim  lr {last['lr']:.2g}  {last['images_per_s']:.0f} img/s  {seconds:.1f}s  "
                  f"samples: {method}{'  *best*' if improved else ''}", flush=True)
    if ddp.world_size > 1:
        dist.barrier()
    return {**(last or {}), "run_dir": run_dir, "best_test_bpd": best}


def main(argv=None) -> int:
    keep_heap()  # CPU steps reuse heap pages instead of page-faulting fresh ones every step
    try:
        cfg, resume = parse_args(argv)
        summary = train(cfg, resume)
    except (ValueError, CheckpointError, DataError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except torch.cuda.OutOfMemoryError:
        print("error: CUDA ran out of memory; lower --batch-size (or --hidden-channels), or add --amp",
              file=sys.stderr)
        return 3
    if summary.get("epoch"):
        print(f"done: {summary['run_dir']}  final test {summary['test_bpd']:.4f} bits/dim "
              f"(best {summary['best_test_bpd']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
