"""Every knob in two dataclasses: ``ModelConfig`` (the network's shape: what ``PixelCNN(config)`` builds, what a
checkpoint stores and what an export's metadata says) and ``Config`` (a training run: data, optimisation, sampling,
run options, and one ``ModelConfig``). JSON save/load with type checks; each field's ``help`` is the CLI's help text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields

from pixelcnn.atomic import atomic_write_text

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "folder")
DEVICES = ("auto", "cpu", "cuda", "mps")
CONVS = ("auto", "reference", "triton")
SAMPLE_METHODS = ("auto", "naive", "cached", "cached_ext")
ARCHS = ("pixelcnn", "gated")
# the data options that fix the network's input: a checkpoint only resumes a run with the same values
DATA_ARCH_KEYS = ("dataset", "channels", "img_size")


def knob(default, help: str, **kw):
    """A dataclass field with its CLI help text (``python -m pixelcnn.train --help`` reads it from here)."""
    if isinstance(default, (list, dict, tuple)) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: default, metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def _check_types(cls, data: dict, source: str) -> dict:
    """Refuse unknown keys and values of the wrong type; floats accept ints."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object of config keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        renamed = {k: _RENAMED[k] for k in unknown if k in _RENAMED}
        hint = "".join(f"; {k!r} is now {v!r}" for k, v in renamed.items())
        raise ValueError(f"{source}: unknown config key(s) {unknown}{hint}; valid keys are {sorted(known)}")
    out = {}
    for key, value in data.items():
        want = hints[key]
        if want == tuple[int, int]:
            ok = (
                isinstance(value, (list, tuple))
                and len(value) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            )
            value = tuple(value) if ok else value
            name = "[height, width]"
        elif dataclasses.is_dataclass(want):
            value = want.from_dict(value, source=f"{source} key {key!r}")
            ok, name = True, want.__name__
        else:
            ok = (
                isinstance(value, bool)
                if want is bool
                else isinstance(value, int) and not isinstance(value, bool)
                if want is int
                else isinstance(value, (int, float)) and not isinstance(value, bool)
                if want is float
                else isinstance(value, want)
            )
            name = want.__name__
            value = float(value) if ok and want is float else value
        if not ok:
            raise ValueError(f"{source}: key {key!r} must be {name}, got {type(value).__name__} ({value!r})")
        out[key] = value
    return out


# the model keys of the flat config that checkpoints written before ModelConfig carried -> ModelConfig fields
LEGACY_MODEL_KEYS = {"hidden_channels": "hidden", "residual_blocks": "blocks", "kernel_size": "kernel_size"}
_RENAMED = {old: f"model.{new}" for old, new in LEGACY_MODEL_KEYS.items()}


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape; ``PixelCNN(ModelConfig(...))`` builds it. In a training ``Config`` the data fields
    (channels, image_size, num_classes) are filled in from the dataset when the run starts."""

    channels: int = knob(1, "image channels: 1 (grey) or 3 (RGB)")
    image_size: tuple[int, int] = knob((28, 28), "image height and width")
    num_classes: int = knob(10, "conditioning classes (0: unconditional)")
    arch: str = knob(
        "pixelcnn",
        "pixelcnn (masked 3x3 residual stack, has the blind spot) or gated (vertical + horizontal gated stacks, "
        "no blind spot)",
        choices=ARCHS,
    )
    hidden: int = knob(64, "h: residual blocks carry 2h channels, their masked k x k convs h")
    blocks: int = knob(5, "number of residual blocks")
    kernel_size: int = knob(7, "k0: size of the first (mask A) convolution, odd")
    block_kernel_size: int = knob(3, "size of each residual block's masked (mask B) convolution, odd")

    def validate(self) -> ModelConfig:
        if self.arch not in ARCHS:
            raise ValueError(f"model arch={self.arch!r} must be one of {ARCHS}")
        if self.channels not in (1, 3):
            raise ValueError(f"model channels={self.channels} must be 1 or 3")
        if self.hidden < self.channels:
            raise ValueError(f"model hidden={self.hidden} must be >= the image channels ({self.channels})")
        for name in ("kernel_size", "block_kernel_size"):
            k = getattr(self, name)
            if k < 1 or k % 2 == 0:
                raise ValueError(f"model {name}={k} must be a positive odd number")
        if self.blocks < 0 or self.num_classes < 0:
            raise ValueError(f"model blocks={self.blocks} and num_classes={self.num_classes} must be >= 0")
        h, w = self.image_size
        if min(h, w) < 1:
            raise ValueError(f"model image_size={self.image_size} must be positive")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_dict(cls, data: dict, source: str = "model config") -> ModelConfig:
        return cls(**_check_types(cls, data, source)).validate()


@dataclass
class Config:
    # data
    dataset: str = knob(
        "digits",
        "digits (embedded, offline), mnist, fashion-mnist, cifar10, or folder (an ImageFolder tree)",
        choices=DATASETS,
    )
    data_dir: str = knob("data", "root folder of the dataset files (torchvision layout, or the ImageFolder root)")
    download: bool = knob(False, "let torchvision download mnist / fashion-mnist / cifar10 into --data-dir")
    channels: int = knob(
        0, "folder datasets: 1 = greyscale, 3 = RGB (0 = the dataset's own; folder default 3)", choices=(0, 1, 3)
    )
    img_size: int = knob(0, "resize images to N x N (0 = keep the native size)")
    train_limit: int = knob(0, "use only the first N training images (0 = all)")
    test_limit: int = knob(0, "use only the first N test images (0 = all)")
    num_workers: int = knob(0, "DataLoader worker processes")
    skip_bad_images: bool = knob(False, "folder datasets: skip unreadable image files (and say how many)")
    # model: hidden, blocks and kernel sizes are flags (--hidden, --blocks, ...); the rest comes from the data
    model: ModelConfig = knob(ModelConfig(), "the network's shape")
    # optimisation
    batch_size: int = knob(64, "images per optimiser step (per process under torchrun)")
    epochs: int = knob(12, "number of epochs")
    lr: float = knob(3e-3, "Adam learning rate")
    weight_decay: float = knob(0.0, "Adam weight decay")
    lr_factor: float = knob(0.5, "ReduceLROnPlateau factor (on test bits/dim)")
    lr_patience: int = knob(1, "ReduceLROnPlateau patience in epochs")
    max_steps: int = knob(0, "stop after this many optimiser steps in total (0 = no limit)")
    grad_clip: float = knob(1.0, "clip the gradient norm to this value (0 = off)")
    # sampling
    temperature: float = knob(1.0, "softmax temperature of the per-epoch samples (> 0)")
    n_per_class: int = knob(4, "samples per class in each epoch's sample grid")
    sample_method: str = knob(
        "auto",
        "sampler for the per-epoch grids: naive, cached, cached_ext, or auto (fastest available)",
        choices=SAMPLE_METHODS,
    )
    # run
    save_dir: str = knob("runs", "folder for run outputs")
    model_name: str = knob("pixelcnn", "run name: outputs go to <save-dir>/<model-name>/")
    seed: int = knob(0, "seed of the data order, initialisation and sampling")
    device: str = knob("auto", "auto (cuda > mps > cpu), cpu, cuda or mps", choices=DEVICES)
    compile: bool = knob(False, "torch.compile the model for training")
    amp: bool = knob(False, "bfloat16 autocast (CUDA only)")
    conv: str = knob(
        "auto",
        "masked-conv implementation: reference (F.conv2d), triton (fused kernel), auto "
        "(measured per device and layer shape on CUDA; reference on CPU)",
        choices=CONVS,
    )
    checkpoint_every: int = knob(0, "also write last.pt every N optimiser steps (0 = once per epoch)")
    tensorboard: bool = knob(False, "also log bits/dim, lr, images/s and sample grids to <run>/tb (TensorBoard)")

    def validate(self) -> Config:
        def choice(name, options):
            if getattr(self, name) not in options:
                raise ValueError(f"config {name}={getattr(self, name)!r} is not one of {options}")

        choice("dataset", DATASETS)
        choice("device", DEVICES)
        choice("conv", CONVS)
        choice("sample_method", SAMPLE_METHODS)
        if self.channels not in (0, 1, 3):
            raise ValueError(f"config channels={self.channels} must be 1 or 3 (or 0 for the dataset's own)")
        self.model.validate()
        positive = ("batch_size", "epochs", "n_per_class")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"config {name}={getattr(self, name)} must be >= 1")
        non_negative = (
            "img_size",
            "train_limit",
            "test_limit",
            "num_workers",
            "max_steps",
            "checkpoint_every",
            "weight_decay",
            "grad_clip",
            "lr_patience",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"config {name}={getattr(self, name)} must be >= 0")
        if not self.lr > 0:
            raise ValueError(f"config lr={self.lr} must be > 0")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"config lr_factor={self.lr_factor} must lie in (0, 1)")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        k = self.model.kernel_size
        if self.img_size and self.img_size < k // 2 + 1:
            raise ValueError(f"img_size={self.img_size} is too small for kernel_size={k}; use img_size >= {k // 2 + 1}")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d

    def arch(self) -> dict:
        """What a resumed run must share with its checkpoint: the data options that shape the input and the model's
        own knobs (its data-derived fields follow from the former)."""
        m = self.model
        return {
            **{k: getattr(self, k) for k in DATA_ARCH_KEYS},
            "model.arch": m.arch,
            "model.hidden": m.hidden,
            "model.blocks": m.blocks,
            "model.kernel_size": m.kernel_size,
            "model.block_kernel_size": m.block_kernel_size,
        }

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> Config:
        return cls(**_check_types(cls, data, source)).validate()

    @classmethod
    def load(cls, path: str) -> Config:
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ValueError(f"config file {path!r} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {path!r} is not valid JSON: {e}") from None
        return cls.from_dict(data, source=f"config file {path!r}")

    def save(self, path: str) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
