"""Checkpoints: atomic writes, ``weights_only=True`` loads, and errors that say what is wrong with a file."""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from typing import Any, Optional

import numpy as np
import torch

from pixelcnn.architectures import build_model
from pixelcnn.atomic import atomic_write
from pixelcnn.config import LEGACY_MODEL_KEYS, Config
from pixelcnn.model import AutoregressiveModel

FORMAT = "pixelcnn-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, unsafe or does not match the requested model."""


def save_checkpoint(path: str, state: dict) -> None:
    """Write ``state`` (plus the format tag) to ``path`` atomically: a crash leaves the previous file intact."""
    state = {"format": FORMAT, **state}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by ``save_checkpoint`` with ``weights_only=True`` (no code runs on load)."""
    if not os.path.isfile(path):
        raise CheckpointError(
            f"checkpoint {path!r} does not exist; pass the path of a .pt file written by "
            f"pixelcnn.train (e.g. runs/pixelcnn/best.pt)"
        )
    if not zipfile.is_zipfile(path):  # torch.save always writes a zip archive
        raise CheckpointError(
            f"checkpoint {path!r} is corrupt or not a PyTorch checkpoint (not a torch.save zip "
            f"archive; truncated or another file type); use an intact checkpoint such as "
            f"best.pt, or retrain"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = next(
            (ln.strip() for ln in str(e).splitlines() if "Unsupported global" in ln or "GLOBAL" in ln), type(e).__name__
        )
        raise CheckpointError(
            f"checkpoint {path!r} was refused by the safe loader (weights_only=True): it holds "
            f"objects other than tensors and plain data ({first}). Only load checkpoints you "
            f"trust; re-save it with pixelcnn.train"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path!r} is corrupt or not a PyTorch file ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); use an intact checkpoint such as "
            f"best.pt or retrain"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint {path!r} is not a pixelcnn checkpoint (no {FORMAT!r} tag); it was not "
            f"written by pixelcnn.train"
        )
    return state


def _upgrade_legacy_config(state: dict) -> dict:
    """The config dict of a checkpoint written before ModelConfig existed (model knobs flat in the config, the data's
    channels/size/classes in state["data"]), in today's layout."""
    old = dict(state["config"])
    data = state.get("data") or {}
    if not {"channels", "image_size", "num_classes"} <= set(data):
        raise KeyError("an old-layout checkpoint without its data metadata (channels, image size, classes)")
    model = {new: old.pop(key) for key, new in LEGACY_MODEL_KEYS.items() if key in old}
    model.update(channels=data["channels"], image_size=list(data["image_size"]), num_classes=data["num_classes"])
    return {**old, "model": model}


def checkpoint_config(state: dict, path: str = "checkpoint") -> Config:
    """The run config stored in a checkpoint (old flat-layout configs are upgraded)."""
    try:
        raw = state["config"]
        if isinstance(raw, dict) and "model" not in raw and "hidden_channels" in raw:
            raw = _upgrade_legacy_config(state)
        return Config.from_dict(raw, source=f"{path} config")
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(
            f"{path}: its stored config is invalid ({e}); re-train or use a checkpoint written by pixelcnn.train"
        ) from None


def check_compatible(state: dict, cfg: Config, path: str) -> None:
    """Raise if the checkpoint was trained with another architecture or dataset than ``cfg``."""
    stored, want = checkpoint_config(state, path).arch(), cfg.arch()
    diffs = [f"{k}: checkpoint {stored[k]!r} vs requested {want[k]!r}" for k in stored if stored[k] != want[k]]
    if diffs:
        raise CheckpointError(
            f"checkpoint {path!r} does not match this run's config ({'; '.join(diffs)}); "
            f"use the same settings, or another --save-dir / --model-name for a new run"
        )


def load_model(path: str, map_location: Any = "cpu") -> tuple[AutoregressiveModel, Config, dict]:
    """Rebuild the trained model from a checkpoint: ``(model in eval mode, run config, data metadata)``; the model's
    shape is ``cfg.model`` (a ModelConfig), the metadata adds the class names when the run knew them. ``path`` may
    also be a pretrained folder (config.json + model.safetensors, see pixelcnn.hub), the ``.safetensors`` file in one
    (read with its folder's config.json), or a Hub repo id."""
    if path.endswith(".safetensors") and os.path.isfile(path):
        path = os.path.dirname(path) or "."
    if os.path.isdir(path) or not (os.path.exists(path) or path.endswith(".pt")):
        return _load_pretrained_model(path, map_location)
    state = load_checkpoint(path, map_location)
    cfg = checkpoint_config(state, path)
    model = build_model(cfg.model)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"checkpoint {path!r}: weights do not fit the model its config describes ({str(e).splitlines()[0]})"
        ) from None
    m = cfg.model
    meta = {
        "channels": m.channels,
        "image_size": list(m.image_size),
        "num_classes": m.num_classes,
        "class_names": (state.get("data") or {}).get("class_names"),
    }
    return model.to(map_location).eval(), cfg, meta


def _load_pretrained_model(path: str, map_location: Any) -> tuple[AutoregressiveModel, Config, dict]:
    from pixelcnn.hub import PretrainedError, load_pretrained

    try:
        model, raw = load_pretrained(path, map_location)
        stored = raw.get("train_config")
        cfg = Config.from_dict(stored, source=f"{path} train_config") if stored else Config()
    except (PretrainedError, ValueError) as e:
        raise CheckpointError(str(e)) from None
    cfg.model = model.config
    m = model.config
    meta = {
        "channels": m.channels,
        "image_size": list(m.image_size),
        "num_classes": m.num_classes,
        "class_names": raw.get("class_names"),
    }
    return model, cfg, meta


def rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": _python_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def set_rng_state(state: Optional[dict]) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        (npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
