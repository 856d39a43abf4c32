"""Training CLI: ``python -m pixelcnn.train [--compile] [--dataset mnist --data-dir DIR] ...``.

Writes under ``<save-dir>/<model-name>/``: config.json, last.pt (every epoch and every --checkpoint-every steps),
best.pt (lowest test bits/dim), metrics.csv, samples/epoch_XXX.png and loss_curve.png. Runs under
``torchrun --nproc_per_node=N`` with DistributedDataParallel; only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import math
import os
import random
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field, fields
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist

from pixelcnn.architectures import build_model
from pixelcnn.atomic import atomic_write, atomic_write_text
from pixelcnn.checkpoint import (
    CheckpointError,
    check_compatible,
    checkpoint_config,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from pixelcnn.config import Config, ModelConfig
from pixelcnn.cpu_allocator import keep_heap
from pixelcnn.data import DataError, ImageData, load_data, make_loader
from pixelcnn.images import save_grid
from pixelcnn.likelihood import nll_nats
from pixelcnn.model import AutoregressiveModel
from pixelcnn.sampling import resolve_method, sample

METRIC_FIELDS = ("epoch", "step", "train_bpd", "test_bpd", "lr", "images_per_s", "seconds")


class TrainingError(RuntimeError):
    """Training stopped for a reason the user can act on (message says which)."""


class Interrupted(Exception):
    """SIGINT/SIGTERM stopped the run after a step; last.pt holds that step. ``code``: the exit status (130/143)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.code = 128 + signum


class StopFlag:
    """SIGINT/SIGTERM handlers that only record the signal: the run stops at the next step boundary. A second
    Ctrl-C exits at once (status 130)."""

    def __init__(self):
        self.signum = 0
        self._old = {}

    def _handle(self, signum, frame):
        if self.signum and signum == signal.SIGINT:
            print("\nsecond Ctrl-C: exiting now without a checkpoint", file=sys.stderr, flush=True)
            os._exit(130)
        self.signum = self.signum or signum

    def __enter__(self):
        if threading_main():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# --- command line -------------------------------------------------------------------------------------------
# ModelConfig fields a user sets; channels, image size and classes come from the data
MODEL_FLAGS = ("arch", "hidden", "blocks", "kernel_size", "block_kernel_size")


def _add_flag(p: argparse.ArgumentParser, f, default, dest: str) -> None:
    flag = "--" + f.name.replace("_", "-")
    help_text = f"{f.metadata['help']} (default {default})"
    if f.type in (bool, "bool"):
        p.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, help=help_text)
    else:
        kind = {"int": int, "float": float, "str": str}.get(f.type, f.type)
        p.add_argument(flag, dest=dest, type=kind, choices=f.metadata.get("choices"), help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """One flag per Config field and per settable ModelConfig field; help texts come from the fields."""
    p = argparse.ArgumentParser(
        prog="python -m pixelcnn.train", description=__doc__.split("\n\n")[0], argument_default=argparse.SUPPRESS
    )
    defaults = Config()
    for f in fields(Config):
        if f.name == "model":
            model_fields = {mf.name: mf for mf in fields(ModelConfig)}
            for name in MODEL_FLAGS:
                _add_flag(p, model_fields[name], getattr(defaults.model, name), f"model.{name}")
        else:
            _add_flag(p, f, getattr(defaults, f.name), f.name)
    p.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE.json",
        help="JSON file of config keys; flags given on the command line override it",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="CKPT",
        help="continue the run from CKPT (default "
        "<save-dir>/<model-name>/last.pt) with its config; flags given here override it",
    )
    return p


def _merge(base: dict, flags: dict) -> dict:
    """``base`` (a Config dict) with the command line's flags on top; ``model.x`` flags go into base["model"]."""
    out = {**base, "model": dict(base.get("model", {}))}
    for key, value in flags.items():
        if key.startswith("model."):
            out["model"][key.split(".", 1)[1]] = value
        else:
            out[key] = value
    return out


def parse_args(argv=None) -> tuple[Config, Optional[str]]:
    """Config from: defaults < --config FILE < the resumed checkpoint's config < explicit flags."""
    args = vars(build_parser().parse_args(argv))
    config_file = args.pop("config_file", None)
    resume = args.pop("resume", None)
    base = Config.load(config_file).to_dict() if config_file else Config().to_dict()
    if resume is not None:
        probe = Config.from_dict(_merge(base, args))
        path = resume or os.path.join(probe.save_dir, probe.model_name, "last.pt")
        base = checkpoint_config(load_checkpoint(path), path).to_dict()
        resume = path
    return Config.from_dict(_merge(base, args), source="command line"), resume


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


def resolve_conv(
    conv: str,
    device: torch.device,
    model: Optional[AutoregressiveModel] = None,
    batch_size: int = 16,
    amp: bool = False,
) -> str:
    """``auto``: the reference on CPU; on CUDA the faster of reference and triton, timed on ``model`` (with ``amp``)."""
    if conv != "auto":
        return conv
    if device.type != "cuda" or model is None:
        return "reference"
    from pixelcnn.ops.masked_conv import choose_conv_impl

    mc = model.config
    g = torch.Generator().manual_seed(0)  # the run's own RNG streams stay untouched
    image = torch.randint(0, 256, (batch_size, mc.channels, *mc.image_size), generator=g, dtype=torch.uint8)
    image = image.to(device)
    labels = torch.randint(0, mc.num_classes, (batch_size,), generator=g).to(device) if mc.num_classes else None

    def step(impl: str) -> None:
        model.set_conv_impl(impl)
        loss_fn(model, image, labels, amp).backward()

    choice = choose_conv_impl(step, device, (repr(mc), batch_size, amp))
    model.zero_grad(set_to_none=True)
    return choice


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def loss_fn(model, images: torch.Tensor, labels: Optional[torch.Tensor], amp: bool) -> torch.Tensor:
    """Mean NLL in nats per sub-pixel of a batch (bf16 autocast when ``amp`` on CUDA)."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and images.is_cuda):
        logits = model(images, labels)
    return nll_nats(logits, images)


@torch.no_grad()
def evaluate(
    model,
    images: torch.Tensor,
    labels: Optional[torch.Tensor],
    batch_size: int,
    device: torch.device,
    ddp: Dist,
    amp: bool = False,
) -> float:
    """Test bits/dim over this process's shard (every world_size-th image), all-reduced across processes."""
    was = model.training
    model.eval()
    idx = torch.arange(ddp.rank, len(images), ddp.world_size)
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for s in range(0, len(idx), batch_size):
        b = idx[s : s + batch_size]
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


# --- the run -------------------------------------------------------------------------------------------------
@dataclass
class Progress:
    """Where a run stands; checkpoints store it, --resume restores it."""

    epoch: int = 0  # epochs finished
    epoch_step: int = 0  # batches of the current epoch already trained (a checkpoint mid-epoch)
    step: int = 0  # optimiser steps in total
    best: float = float("inf")  # lowest test bits/dim so far
    history: list = field(default_factory=list)
    partial: Optional[dict] = None  # running sums of the interrupted epoch: nats, seen, seconds


@dataclass
class Run:
    """Everything one training run holds between its steps (see ``train``)."""

    cfg: Config
    ddp: Dist
    device: torch.device
    conv: str
    amp: bool
    run_dir: str
    data: ImageData
    model: AutoregressiveModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    progress: Progress = field(default_factory=Progress)
    stop: Optional[StopFlag] = None
    tb: Optional[object] = None  # torch.utils.tensorboard SummaryWriter under --tensorboard
    command: Optional[str] = None  # the command line that started the run (for best/'s model card)

    @property
    def labels_used(self) -> bool:
        return self.data.num_classes > 0


def build_run(cfg: Config) -> Run:
    """Devices, data, the model its shape implies (``cfg.model`` gets the data's channels, size and classes), and
    the optimiser."""
    ddp = setup_distributed("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    device = resolve_device(cfg.device, ddp)
    seed_everything(cfg.seed)
    data = load_data(cfg)
    cfg.model = dataclasses.replace(
        cfg.model, channels=data.channels, image_size=tuple(data.image_size), num_classes=data.num_classes
    ).validate()
    model = build_model(cfg.model).to(device)
    conv = resolve_conv(cfg.conv, device, model, cfg.batch_size, cfg.amp and device.type == "cuda")
    model.set_conv_impl(conv)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.lr_factor, patience=cfg.lr_patience)
    return Run(
        cfg,
        ddp,
        device,
        conv,
        cfg.amp and device.type == "cuda",
        os.path.join(cfg.save_dir, cfg.model_name),
        data,
        model,
        optimizer,
        scheduler,
    )


def restore(run: Run, path: str) -> None:
    """Load weights, optimiser, scheduler, RNG states and progress from the checkpoint at ``path``."""
    state = load_checkpoint(path, map_location=run.device)
    check_compatible(state, run.cfg, path)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    for g in run.optimizer.param_groups:  # a resumed run may be given a new --lr
        g.setdefault("initial_lr", g["lr"])
    set_rng_state(state.get("rng"))
    run.progress = Progress(
        state["epoch"], state["epoch_step"], state["step"], state["best"], list(state["history"]), state.get("partial")
    )


def prepare_run_dir(run: Run, resumed: bool) -> None:
    """Create the run folder, drop temp files of a run killed mid-write, save config.json, print one summary."""
    samples = os.path.join(run.run_dir, "samples")
    os.makedirs(samples, exist_ok=True)
    for folder in (run.run_dir, samples):
        for name in os.listdir(folder):
            if name.startswith(".tmp-"):
                os.unlink(os.path.join(folder, name))
    run.cfg.save(os.path.join(run.run_dir, "config.json"))
    n_params = sum(p.numel() for p in run.model.parameters())
    data, pr = run.data, run.progress
    print(
        f"PixelCNN: {n_params:,} parameters | device {run.device} | conv {run.conv} | compile {run.cfg.compile} | "
        f"data {run.cfg.dataset} {data.channels}x{data.image_size[0]}x{data.image_size[1]}, "
        f"{len(data.train_labels)} train / {len(data.test_labels)} test images, {data.num_classes} classes"
        f"{' | world size ' + str(run.ddp.world_size) if run.ddp.world_size > 1 else ''}"
        f"{f' | resumed at epoch {pr.epoch + 1} step {pr.step}' if resumed else ''}",
        flush=True,
    )


def training_module(run: Run) -> torch.nn.Module:
    """The module the optimiser steps through: the model, wrapped in DDP under torchrun, compiled on request."""
    net = run.model
    if run.ddp.world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[run.device.index] if run.device.type == "cuda" else None
        )
    return torch.compile(net) if run.cfg.compile else net


def save_last(run: Run, also_best: bool = False) -> None:
    """Checkpoint the run (rank 0) as last.pt, and as best.pt when ``also_best``; refuse NaN/Inf weights."""
    if not run.ddp.main:
        return
    pr = run.progress
    if not all(torch.isfinite(p).all() for p in run.model.parameters()):
        raise TrainingError(
            f"the weights became NaN/Inf by step {pr.step}; training stopped and the last good "
            f"checkpoint ({run.run_dir}/last.pt) was kept. Lower --lr or set --grad-clip"
        )
    state = {
        "config": run.cfg.to_dict(),
        "data": {"class_names": run.data.class_names},
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": rng_state(),
        "epoch": pr.epoch,
        "epoch_step": pr.epoch_step,
        "step": pr.step,
        "best": pr.best,
        "history": pr.history,
        "partial": pr.partial,
    }
    save_checkpoint(os.path.join(run.run_dir, "last.pt"), state)
    if also_best:
        save_checkpoint(os.path.join(run.run_dir, "best.pt"), state)


def optimiser_step(run: Run, net: torch.nn.Module, images: torch.Tensor, labels: Optional[torch.Tensor]) -> float:
    """One step on a batch; returns the batch's summed NLL in nats over all processes (and counts the images)."""
    cfg, pr = run.cfg, run.progress
    loss = loss_fn(net, images, labels, run.amp)
    if not torch.isfinite(loss):
        raise TrainingError(
            f"loss became {float(loss.detach())} at epoch {pr.epoch + 1}, step {pr.step + 1}; "
            f"training stopped and the last good checkpoint ({run.run_dir}/last.pt) was kept. "
            f"Lower --lr (now {run.optimizer.param_groups[0]['lr']:g}) or set --grad-clip"
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.optimizer.step()
    pr.step += 1
    pr.epoch_step += 1
    batch = torch.stack(
        [
            loss.detach().double() * len(images),
            torch.tensor(float(len(images)), dtype=torch.float64, device=images.device),
        ]
    )
    if run.ddp.world_size > 1:
        dist.all_reduce(batch)
    return batch.tolist()


def train_epoch(run: Run, net: torch.nn.Module, loader) -> tuple[float, int, float]:
    """Train one epoch (or the rest of an interrupted one); returns (nats, images seen, seconds)."""
    from tqdm import tqdm

    cfg, pr = run.cfg, run.progress
    loader.sampler.set_epoch(pr.epoch)
    run.model.train()
    sums = pr.partial or {"nats": 0.0, "seen": 0, "seconds": 0.0}
    nats, seen, t0 = sums["nats"], sums["seen"], time.time() - sums["seconds"]
    pr.partial = None
    batches = iter(loader)
    for _ in range(pr.epoch_step):  # a resumed epoch skips the batches it already trained on
        next(batches)
    bar = tqdm(
        batches,
        total=len(loader),
        initial=pr.epoch_step,
        desc=f"epoch {pr.epoch + 1}/{cfg.epochs}",
        disable=not run.ddp.main or None,
        leave=False,
        dynamic_ncols=True,
    )
    for images, labels in bar:
        images = images.to(run.device, non_blocking=True)
        labels = labels.to(run.device, non_blocking=True) if run.labels_used else None
        batch_nats, count = optimiser_step(run, net, images, labels)
        nats += batch_nats
        seen += int(count)
        bar.set_postfix(bpd=f"{nats / seen / math.log(2):.3f}")
        if cfg.checkpoint_every and pr.step % cfg.checkpoint_every == 0:
            pr.partial = {"nats": nats, "seen": seen, "seconds": time.time() - t0}
            save_last(run)
            pr.partial = None
        if run.stop is not None and stop_requested(run):
            bar.close()
            pr.partial = {"nats": nats, "seen": seen, "seconds": time.time() - t0}
            interrupt(run)
        if cfg.max_steps and pr.step >= cfg.max_steps:
            break
    bar.close()
    return nats, seen, time.time() - t0


def stop_requested(run: Run) -> bool:
    """Whether a signal asked the run to stop; under torchrun every process learns it at the same step."""
    signum = run.stop.signum
    if run.ddp.world_size > 1:
        flag = torch.tensor([signum], dtype=torch.int64, device=run.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        signum = run.stop.signum = int(flag.item())
    return bool(signum)


def interrupt(run: Run) -> None:
    """Checkpoint the step just finished (rank 0 writes, the others wait) and stop with one line saying where."""
    pr = run.progress
    save_last(run)
    if run.ddp.world_size > 1:
        dist.barrier()
    name = signal.Signals(run.stop.signum).name
    path = os.path.join(run.run_dir, "last.pt")
    cmd = run.command or "python -m pixelcnn.train"
    if "--resume" not in cmd:
        cmd += " --resume"
    raise Interrupted(
        run.stop.signum,
        f"{name}: stopped at epoch {pr.epoch + 1} step {pr.step}; checkpoint {path}; continue with: {cmd}",
    )


def write_best_folder(run: Run, test_bpd: float, samples_png: str) -> None:
    """best/ beside best.pt: the model as a pretrained folder (pixelcnn.hub); skipped with a note when safetensors
    is not installed."""
    from pixelcnn.hub import PretrainedError, save_pretrained

    cfg, pr = run.cfg, run.progress
    card = {
        "title": f"PixelCNN ({cfg.dataset})",
        "data": f"--dataset {cfg.dataset} --data-dir {cfg.data_dir}: {len(run.data.train_labels)} training and "
        f"{len(run.data.test_labels)} test images",
        "command": run.command or "python -m pixelcnn.train (config: train_config in config.json)",
        "test_bpd": test_bpd,
        "epochs": pr.epoch,
        "steps": pr.step,
        "samples_caption": f"Epoch {pr.epoch}, one row per class, temperature {cfg.temperature}.",
    }
    extra = {"test_bpd": test_bpd, "train_config": cfg.to_dict(), "class_names": run.data.class_names}
    try:
        save_pretrained(run.model, os.path.join(run.run_dir, "best"), card, samples_png, extra)
    except PretrainedError as e:
        print(f"note: best/ not written: {e}", file=sys.stderr)


def open_tensorboard(run: Run):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TrainingError(
            "--tensorboard needs the tensorboard package: pip install tensorboard (or drop --tensorboard; "
            "metrics.csv and loss_curve.png are written either way)"
        ) from None
    return SummaryWriter(os.path.join(run.run_dir, "tb"))


def log_tensorboard(run: Run, row: dict, samples_png: str) -> None:
    from PIL import Image

    tb, step = run.tb, row["step"]
    tb.add_scalar("bits_per_dim/train", row["train_bpd"], step)
    tb.add_scalar("bits_per_dim/test", row["test_bpd"], step)
    tb.add_scalar("lr", row["lr"], step)
    tb.add_scalar("images_per_s", row["images_per_s"], step)
    with Image.open(samples_png) as img:
        tb.add_image("samples", np.asarray(img.convert("RGB")), step, dataformats="HWC")
    tb.flush()


def finish_epoch(run: Run, nats: float, seen: int, seconds: float) -> dict:
    """Evaluate, step the scheduler, record the metrics row; on rank 0 write samples, checkpoints, CSV, curve."""
    cfg, pr, data = run.cfg, run.progress, run.data
    train_bpd = nats / max(seen, 1) / math.log(2.0)
    test_bpd = evaluate(
        run.model,
        data.test_images,
        data.test_labels if run.labels_used else None,
        cfg.batch_size,
        run.device,
        run.ddp,
        run.amp,
    )
    run.scheduler.step(test_bpd)
    row = {
        "epoch": pr.epoch + 1,
        "step": pr.step,
        "train_bpd": round(train_bpd, 5),
        "test_bpd": round(test_bpd, 5),
        "lr": run.optimizer.param_groups[0]["lr"],
        "images_per_s": round(seen / max(seconds, 1e-9), 1),
        "seconds": round(seconds, 2),
    }
    pr.history.append(row)
    improved = test_bpd < pr.best
    pr.best = min(pr.best, test_bpd)
    pr.epoch, pr.epoch_step = pr.epoch + 1, 0
    if run.ddp.main:
        samples_png = os.path.join(run.run_dir, "samples", f"epoch_{pr.epoch:03d}.png")
        method = write_samples(
            samples_png,
            run.model,
            cfg,
            data,
            run.device,
            pr.epoch,
        )
        save_last(run, also_best=improved)
        if improved:
            write_best_folder(run, test_bpd, samples_png)
        if run.tb is not None:
            log_tensorboard(run, row, samples_png)
        write_metrics(os.path.join(run.run_dir, "metrics.csv"), pr.history)
        write_curve(os.path.join(run.run_dir, "loss_curve.png"), pr.history)
        print(
            f"epoch {pr.epoch}/{cfg.epochs}  step {pr.step}  train {train_bpd:.4f}  test {test_bpd:.4f} "
            f"bits/dim  lr {row['lr']:.2g}  {row['images_per_s']:.0f} img/s  {seconds:.1f}s  "
            f"samples: {method}{'  *best*' if improved else ''}",
            flush=True,
        )
    return row


def train(cfg: Config, resume: Optional[str] = None, command: Optional[str] = None) -> dict:
    """Run training as configured; returns the final metrics row plus the run folder. SIGINT/SIGTERM stop it after
    the current step with last.pt at that step (``Interrupted``)."""
    with StopFlag() as stop:
        return _train(cfg, resume, command, stop)


def _train(cfg: Config, resume: Optional[str], command: Optional[str], stop: StopFlag) -> dict:
    cfg.validate()
    run = build_run(cfg)  # the data is read (and its images checked) before anything is written
    run.stop, run.command = stop, command
    if resume:
        restore(run, resume)
    if run.ddp.main:
        prepare_run_dir(run, bool(resume))
        if cfg.tensorboard:
            run.tb = open_tensorboard(run)
    net = training_module(run)
    loader = make_loader(
        run.data.train_images,
        run.data.train_labels,
        cfg.batch_size,
        True,
        cfg.seed,
        cfg.num_workers,
        run.device.type == "cuda",
        run.ddp.rank,
        run.ddp.world_size,
    )
    pr = run.progress
    while pr.epoch < cfg.epochs and not (cfg.max_steps and pr.step >= cfg.max_steps):
        if stop_requested(run):  # a signal during the last epoch's evaluation and samples
            interrupt(run)
        finish_epoch(run, *train_epoch(run, net, loader))
    if run.tb is not None:
        run.tb.close()
    if run.ddp.world_size > 1:
        dist.barrier()
    last = pr.history[-1] if pr.history else {}
    return {**last, "run_dir": run.run_dir, "best_test_bpd": pr.best}


def main(argv=None) -> int:
    keep_heap()  # CPU steps reuse heap pages instead of page-faulting fresh ones every step
    try:
        cfg, resume = parse_args(argv)
        args = sys.argv[1:] if argv is None else list(argv)
        summary = train(cfg, resume, shlex.join(["python", "-m", "pixelcnn.train", *args]))
    except Interrupted as e:
        print(str(e), file=sys.stderr, flush=True)
        return e.code
    except (ValueError, CheckpointError, DataError, TrainingError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except torch.cuda.OutOfMemoryError:
        print("error: CUDA ran out of memory; lower --batch-size (or --hidden), or add --amp", file=sys.stderr)
        return 3
    if summary.get("epoch"):
        print(
            f"done: {summary['run_dir']}  final test {summary['test_bpd']:.4f} bits/dim "
            f"(best {summary['best_test_bpd']:.4f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
