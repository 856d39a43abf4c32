"""Quality at equal training time (issue #21): test bits/dim of the gated PixelCNN, the seed's PixelCNN and the UvA
tutorial 12 gated PixelCNN (``benchmarks/uva_gated.py``) against each model's own training minutes.

``python -m benchmarks.compare_architectures --minutes M --out DIR``

The three models are matched in live parameters (masked-out weights not counted, the rule of
``AutoregressiveModel.live_parameters``): ``pixelcnn`` at its default size (h=64, 5 blocks: 242,816), ``gated`` at
h=40, 6 blocks (248,696; docs/DESIGN.md §3) and the UvA model at 39 channels per stack (246,892: the width whose
count is nearest pixelcnn's). They train **round-robin in one process**, one optimiser step of each in turn on the
same batches, so that whatever else loads the machine hits all three alike; each model's clock is the sum of its own
step times (batch fetch, evaluation and sampling not counted). Training is ``python -m pixelcnn.train``'s: its
defaults (batch 64, Adam lr 3e-3, gradient clipping 1.0, ReduceLROnPlateau on test bits/dim at each epoch's end), its
``optimiser_step``, ``evaluate`` and data loader, eager, channels-last on CPU.

Writes to DIR: arch-comparison.csv (one row per evaluation), arch-comparison.png (test bits/dim vs training minutes,
and vs optimiser steps), arch-comparison.md (the table, naming CPU and torch), gated-samples-t0.6.png and
pixelcnn-samples-t0.6.png (one row per class, temperature 0.6, the cached sampler; -t1.0 beside them) and each
model's final weights (<arch>.pt).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmarks.uva_gated import UvaGatedPixelCNN
from pixelcnn.architectures import build_model
from pixelcnn.atomic import atomic_write, atomic_write_text
from pixelcnn.config import Config, ModelConfig
from pixelcnn.cpu_allocator import keep_heap
from pixelcnn.data import ImageData, load_data, make_loader
from pixelcnn.images import save_grid
from pixelcnn.sampling import sample
from pixelcnn.train import Dist, Run, evaluate, optimiser_step, seed_everything

ARCHS = ("gated", "pixelcnn", "uva")
TITLES = {"gated": "gated (this project)", "pixelcnn": "pixelcnn (seed)", "uva": "UvA tutorial 12 gated"}
GATED_SIZE = {"hidden": 40, "blocks": 6}  # docs/DESIGN.md §3: live parameters matched to pixelcnn's default
UVA_HIDDEN = 39
SMOKE_SIZE = 8  # --smoke: every model this narrow, one block (tests of the script's wiring)
TEMPERATURES = (0.6, 1.0)  # the seed's sampling temperature, and the model's own distribution
CSV_FIELDS = ("arch", "minutes", "step", "epoch", "train_bpd", "test_bpd", "lr", "at")


def build_contender_model(arch: str, data: ImageData, smoke: bool) -> nn.Module:
    """The model ``arch`` names, at the matched size (or the tiny ``--smoke`` size), for ``data``'s images."""
    shape = {"channels": data.channels, "image_size": data.image_size, "num_classes": data.num_classes}
    if arch == "uva":
        if data.channels != 1:
            raise ValueError(f"the UvA tutorial model is for grey images; this dataset has {data.channels} channels")
        return UvaGatedPixelCNN(SMOKE_SIZE if smoke else UVA_HIDDEN, data.num_classes, data.image_size)
    size = {"hidden": SMOKE_SIZE, "blocks": 1} if smoke else GATED_SIZE if arch == "gated" else {}
    return build_model(ModelConfig(arch=arch, **shape, **size))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class Contender:
    """One model in the race: its training state (a ``pixelcnn.train.Run``), its batches and its clock."""

    arch: str
    run: Run
    loader: DataLoader
    budget_s: float
    eval_marks: list[float]  # own-clock seconds at which to evaluate, ascending; the last is the budget
    clock_s: float = 0.0
    nats: float = 0.0  # training NLL summed since the last evaluation
    seen: int = 0
    rows: list = field(default_factory=list)

    def __post_init__(self):
        self.batches = epoch_batches(self)

    @property
    def done(self) -> bool:
        return self.clock_s >= self.budget_s

    def record(self, at: str) -> dict:
        """Evaluate on the whole test split (not on the clock) and add a row."""
        run = self.run
        test_bpd = evaluate(
            run.model, run.data.test_images, run.data.test_labels, run.cfg.batch_size, run.device, run.ddp
        )
        row = {
            "arch": self.arch,
            "minutes": round(self.clock_s / 60.0, 4),
            "step": run.progress.step,
            "epoch": round(run.progress.step / len(self.loader), 3),
            "train_bpd": round(self.nats / self.seen / math.log(2.0), 5) if self.seen else "",
            "test_bpd": round(test_bpd, 5),
            "lr": run.optimizer.param_groups[0]["lr"],
            "at": at,
        }
        self.rows.append(row)
        self.nats, self.seen = 0.0, 0
        print(
            f"{self.arch:8s} {row['minutes']:7.2f} min  step {row['step']:5d}  epoch {row['epoch']:6.2f}  "
            f"test {row['test_bpd']:.4f} bits/dim  ({at})",
            flush=True,
        )
        return row


def epoch_batches(contender: Contender) -> Iterator:
    """The loader's batches epoch after epoch (its order a function of (seed, epoch), as in training); at each
    epoch's end the contender is evaluated and its scheduler stepped on that test bits/dim, as ``pixelcnn.train``
    does."""
    run, loader = contender.run, contender.loader
    while True:
        loader.sampler.set_epoch(run.progress.epoch)
        yield from loader
        run.progress.epoch += 1
        run.scheduler.step(contender.record("epoch end")["test_bpd"])


def make_contender(arch: str, cfg: Config, data: ImageData, device: torch.device, args) -> Contender:
    seed_everything(cfg.seed)  # every model starts from the seed's state, as `python -m pixelcnn.train` does
    model = build_contender_model(arch, data, args.smoke).to(device)
    # pixelcnn.train.build_run's optimiser and scheduler, on the model this script builds
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=cfg.lr_factor, patience=cfg.lr_patience)
    run = Run(cfg, Dist(), device, "reference", False, args.out, data, model, optimizer, scheduler)
    loader = make_loader(data.train_images, data.train_labels, cfg.batch_size, True, cfg.seed)
    budget = args.minutes * 60.0
    marks = [budget * (k + 1) / args.evals for k in range(args.evals)]
    return Contender(arch, run, loader, budget, marks)


def train_step(c: Contender) -> None:
    """One optimiser step of ``c`` on its next batch; only the step itself runs on ``c``'s clock."""
    images, labels = next(c.batches)
    run = c.run
    images, labels = images.to(run.device), labels.to(run.device)
    run.model.train()
    t0 = time.perf_counter()
    nats, count = optimiser_step(run, run.model, images, labels)  # returns host floats: the step has finished
    c.clock_s += time.perf_counter() - t0
    c.nats, c.seen = c.nats + nats, c.seen + int(count)
    if c.clock_s >= c.eval_marks[0]:  # a slow step may pass several marks: one evaluation serves them
        c.eval_marks = [t for t in c.eval_marks if t > c.clock_s]
        c.record("regular" if c.eval_marks else "final")


def race(contenders: list[Contender]) -> None:
    """Round-robin: one step of each model still within its budget, in turn, until every clock is spent."""
    while not all(c.done for c in contenders):
        for c in contenders:
            if not c.done:
                train_step(c)


# --- outputs -------------------------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_csv(path: str, contenders: list[Contender]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    for c in contenders:
        w.writerows(c.rows)
    atomic_write_text(path, buf.getvalue())


def write_plot(path: str, rows: list[dict], title: str) -> None:
    """Test bits/dim of each arch's rows (the CSV's) against its own training minutes, and beside it against its
    optimiser steps: the second panel separates what a step learns from how long a step takes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for arch, style in zip(ARCHS, ("o-", "s-", "^-"), strict=True):
        mine = sorted((r for r in rows if r["arch"] == arch), key=lambda r: float(r["minutes"]))
        bpd = [float(r["test_bpd"]) for r in mine]
        axes[0].plot([float(r["minutes"]) for r in mine], bpd, style, label=TITLES[arch])
        axes[1].plot([int(r["step"]) for r in mine], bpd, style, label=TITLES[arch])
    axes[0].set_xlabel("training minutes (each model's own step time)")
    axes[1].set_xlabel("optimiser steps (batch 64)")
    axes[0].set_ylabel("test bits / dim")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def describe(c: Contender) -> str:
    m = c.run.model
    if c.arch == "uva":
        return f"hidden {m.hidden}, 7 gated layers (dilations 1,2,1,4,1,2,1)"
    mc = m.config
    return f"hidden {mc.hidden}, {mc.blocks} blocks, k0 {mc.kernel_size}, k {mc.block_kernel_size}"


def write_table(path: str, contenders: list[Contender], args, data: ImageData, command: str) -> None:
    lines = [
        "# Gated vs PixelCNN vs UvA tutorial 12: test bits/dim at equal training minutes",
        "",
        f"- machine: {cpu_name()}, {os.cpu_count()} cores shared with other processes, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {contenders[0].run.device}, eager, channels-last",
        f"- data: {len(data.train_labels):,} training / {len(data.test_labels):,} test images ({args.data_dir}); "
        f"batch {contenders[0].run.cfg.batch_size}, Adam lr {contenders[0].run.cfg.lr:g}, gradient clip "
        f"{contenders[0].run.cfg.grad_clip:g}, ReduceLROnPlateau at epoch ends (pixelcnn.train's defaults)",
        f"- {args.minutes:g} training minutes per model, round-robin in one process (one step of each in turn); "
        "clocks count only each model's own optimiser steps",
        "- live parameters: weights a mask zeroes are not counted; all parameters: every tensor element",
        f"- command: `{command}`",
        "",
        "| model | size | live params | all params | steps | epochs | minutes | steps/min | final test bits/dim "
        "| best test bits/dim |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in contenders:
        m, final = c.run.model, c.rows[-1]
        best = min(r["test_bpd"] for r in c.rows)
        steps = c.run.progress.step
        lines.append(
            f"| {TITLES[c.arch]} | {describe(c)} | {m.live_parameters():,} | {count_parameters(m):,} "
            f"| {steps} | {final['epoch']:.2f} | {c.clock_s / 60:.2f} | {steps / (c.clock_s / 60):.1f} "
            f"| {final['test_bpd']:.4f} | {best:.4f} |"
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_samples(out: str, models: dict[str, nn.Module], num_classes: int, n_per_class: int, seed: int) -> None:
    """<arch>-samples-t<T>.png for the project's architectures (the project's samplers serve those): one row per
    class, at the seed's temperature and at 1.0 (after minutes of training the 0.6 grid can be all background)."""
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    for arch, model in models.items():
        if arch == "uva":
            continue
        device = next(model.parameters()).device
        for temperature in TEMPERATURES:
            t0 = time.perf_counter()
            g = torch.Generator(device=device).manual_seed(seed)
            images = sample(model.eval(), labels.to(device), temperature, g, "cached")
            save_grid(os.path.join(out, f"{arch}-samples-t{temperature}.png"), images, n_per_class)
            print(f"{arch}: {len(labels)} samples at temperature {temperature} in {time.perf_counter() - t0:.1f}s")


# --- command line ------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compare_architectures", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, required=True, help="training minutes per model (its own step time)")
    p.add_argument("--out", required=True, help="folder for the CSV, PNGs, table and weights")
    p.add_argument(
        "--data-dir",
        default="../shared/data/mnist-t10k-folder",
        help="ImageFolder root with train/ and test/ (default: the real MNIST split, 9,000 / 1,000)",
    )
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N training images (0 = all)")
    p.add_argument("--test-limit", type=int, default=0, help="use only the first N test images (0 = all)")
    p.add_argument("--evals", type=int, default=5, help="evaluations at even points of each model's clock")
    p.add_argument("--n-per-class", type=int, default=8, help="samples per class row in the sample grids")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and samples")
    p.add_argument("--smoke", action="store_true", help="tiny models (width 8, one block): checks the wiring only")
    args = p.parse_args(argv)
    if not args.minutes > 0 or args.evals < 1 or args.n_per_class < 1:
        p.error("--minutes must be > 0, --evals and --n-per-class >= 1")
    return args


def main(argv=None) -> int:
    keep_heap()  # as pixelcnn.train: CPU steps reuse heap pages
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "-m", "benchmarks.compare_architectures", *given])
    cfg = Config(
        dataset="folder",
        data_dir=args.data_dir,
        channels=1,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        seed=args.seed,
    ).validate()
    data = load_data(cfg)
    device = torch.device("cpu")  # the comparison: this CPU machine (a GPU run is not measured here)
    os.makedirs(args.out, exist_ok=True)
    contenders = [make_contender(arch, cfg, data, device, args) for arch in ARCHS]
    for c in contenders:
        m = c.run.model
        print(f"{c.arch:8s} {describe(c)}: {m.live_parameters():,} live / {count_parameters(m):,}")
    race(contenders)
    write_csv(os.path.join(args.out, "arch-comparison.csv"), contenders)
    title = (
        f"MNIST {len(data.train_labels):,} train / {len(data.test_labels):,} test, {args.minutes:g} min per model, "
        f"{cpu_name()} ({os.cpu_count()} cores, shared), torch {torch.__version__}"
    )
    write_plot(os.path.join(args.out, "arch-comparison.png"), [r for c in contenders for r in c.rows], title)
    write_table(os.path.join(args.out, "arch-comparison.md"), contenders, args, data, command)
    for c in contenders:
        torch.save(c.run.model.state_dict(), os.path.join(args.out, f"{c.arch}.pt"))
    write_samples(args.out, {c.arch: c.run.model for c in contenders}, data.num_classes, args.n_per_class, args.seed)
    print(f"wrote {args.out}/arch-comparison.{{csv,png,md}} and the sample grids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
