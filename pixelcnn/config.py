"""Every training knob in one dataclass (the seed's PARAMS plus run options); JSON save/load with type checks."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, fields

from pixelcnn.atomic import atomic_write_text

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "folder")
DEVICES = ("auto", "cpu", "cuda", "mps")
CONVS = ("auto", "reference", "triton")
SAMPLE_METHODS = ("auto", "naive", "cached", "cached_ext")
# the knobs that fix the network's shape: a checkpoint only loads into a model built with the same values
ARCH_KEYS = ("dataset", "channels", "img_size", "hidden_channels", "residual_blocks", "kernel_size")


@dataclass
class Config:
    # data
    dataset: str = "digits"
    data_dir: str = "data"
    download: bool = False
    channels: int = 0            # folder datasets: 1 (grey) or 3 (RGB); 0 = the dataset's own
    img_size: int = 0            # resize to img_size x img_size; 0 = native size
    train_limit: int = 0         # use only the first N training images (0 = all)
    test_limit: int = 0          # use only the first N test images (0 = all)
    num_workers: int = 0
    # model
    hidden_channels: int = 64
    residual_blocks: int = 5
    kernel_size: int = 7
    # optimisation
    batch_size: int = 64
    epochs: int = 12
    lr: float = 3e-3
    weight_decay: float = 0.0
    lr_factor: float = 0.5       # ReduceLROnPlateau factor
    lr_patience: int = 1         # ReduceLROnPlateau patience (epochs)
    max_steps: int = 0           # stop after this many optimiser steps in total (0 = no limit)
    grad_clip: float = 1.0
    # sampling
    temperature: float = 1.0
    n_per_class: int = 4
    sample_method: str = "auto"
    # run
    save_dir: str = "runs"
    model_name: str = "pixelcnn"
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    amp: bool = False
    conv: str = "auto"
    checkpoint_every: int = 0    # also checkpoint every N optimiser steps (0 = once per epoch)

    def validate(self) -> "Config":
        def choice(name, options):
            if getattr(self, name) not in options:
                raise ValueError(f"config {name}={getattr(self, name)!r} is not one of {options}")
        choice("dataset", DATASETS)
        choice("device", DEVICES)
        choice("conv", CONVS)
        choice("sample_method", SAMPLE_METHODS)
        if self.channels not in (0, 1, 3):
            raise ValueError(f"config channels={self.channels} must be 1 or 3 (or 0 for the dataset's own)")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"config kernel_size={self.kernel_size} must be a positive odd number")
        positive = ("hidden_channels", "batch_size", "epochs", "n_per_class")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"config {name}={getattr(self, name)} must be >= 1")
        non_negative = ("residual_blocks", "img_size", "train_limit", "test_limit", "num_workers", "max_steps",
                        "checkpoint_every", "weight_decay", "grad_clip", "lr_patience")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"config {name}={getattr(self, name)} must be >= 0")
        if not self.lr > 0:
            raise ValueError(f"config lr={self.lr} must be > 0")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"config lr_factor={self.lr_factor} must lie in (0, 1)")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.img_size and self.img_size < self.kernel_size // 2 + 1:
            raise ValueError(f"img_size={self.img_size} is too small for kernel_size={self.kernel_size}; "
                             f"use img_size >= {self.kernel_size // 2 + 1}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def arch(self) -> dict:
        return {k: getattr(self, k) for k in ARCH_KEYS}

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "Config":
        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object of config keys, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown config key(s) {unknown}; valid keys are {sorted(known)}")
        for key, value in data.items():
            want = hints[key]
            ok = (isinstance(value, bool) if want is bool else
                  isinstance(value, int) and not isinstance(value, bool) if want is int else
                  isinstance(value, (int, float)) and not isinstance(value, bool) if want is float else
                  isinstance(value, want))
            if not ok:
                raise ValueError(f"{source}: key {key!r} must be {want.__name__}, got {type(value).__name__} "
                                 f"({value!r})")
        values = {k: (float(v) if hints[k] is float else v) for k, v in data.items()}
        return cls(**values).validate()

    @classmethod
    def load(cls, path: str) -> "Config":
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

