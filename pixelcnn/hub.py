"""Hugging Face Hub-style model folders: ``config.json`` (the ``ModelConfig`` plus the model class),
``model.safetensors`` and a generated model card ``README.md``.

``PixelCNN.save_pretrained(dir)`` / ``PixelCNN.from_pretrained(dir_or_repo_id)`` (``HubMixin``) and the functions
below. A local folder is read as it is; anything else is a Hub repo id resolved through ``huggingface_hub``'s cache
(``HF_HUB_OFFLINE=1`` reads only the cache). ``safetensors`` and ``huggingface_hub`` are imported only here, when a
folder is written or read, so ``import pixelcnn`` works without them.

``python -m pixelcnn.hub CKPT.pt OUT_DIR`` converts a training checkpoint into such a folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Optional

import torch

from pixelcnn.config import ModelConfig

FORMAT = "pixelcnn-pretrained-v1"
CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, SAMPLES_NAME = "config.json", "model.safetensors", "README.md", "samples.png"


class PretrainedError(ValueError):
    """A pretrained folder or repo id is missing, incomplete, or does not match its model (the message says which)."""


def _need(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        pkg = module.split(".")[0].replace("_", "-") if module != "safetensors.torch" else "safetensors"
        raise PretrainedError(
            f"{pkg} is not installed; pretrained folders need it: pip install {pkg} (it is in requirements.txt)"
        ) from None


def build_model(config: ModelConfig, class_name: Optional[str] = None) -> torch.nn.Module:
    """The model ``config.arch`` names (``pixelcnn.architectures.build_model``, the one builder); ``class_name``, the
    ``model_class`` config.json records, must agree with it."""
    from pixelcnn.architectures import build_model as build  # lazy: pixelcnn.model imports this module

    model = build(config)
    if class_name is not None and class_name != type(model).__name__:
        raise PretrainedError(
            f"config.json names model class {class_name!r}, but its model config (arch={config.arch!r}) builds a "
            f"{type(model).__name__}; fix 'model_class' or 'model.arch' in config.json"
        )
    return model


def is_pretrained_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_NAME))


def save_pretrained(
    model: torch.nn.Module,
    save_directory: str,
    card: Optional[dict] = None,
    samples_png: Optional[str] = None,
    extra: Optional[dict] = None,
) -> str:
    """Write ``config.json``, ``model.safetensors``, ``README.md`` (and ``samples.png`` when given) into
    ``save_directory``; each file lands whole (written beside, then renamed)."""
    st = _need("safetensors.torch")
    os.makedirs(save_directory, exist_ok=True)
    config = {
        "format": FORMAT,
        "model_class": type(model).__name__,
        "model": model.config.to_dict(),
        **(extra or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    files = {
        WEIGHTS_NAME: lambda p: st.save_file(tensors, p, metadata={"format": "pt"}),
        CONFIG_NAME: lambda p: _write_text(p, json.dumps(config, indent=2) + "\n"),
    }
    if samples_png:
        files[SAMPLES_NAME] = lambda p: shutil.copyfile(samples_png, p)
    files[CARD_NAME] = lambda p: _write_text(p, model_card(model, card or {}, bool(samples_png)))
    for name, write in files.items():
        fd, tmp = tempfile.mkstemp(dir=save_directory, prefix=".tmp-", suffix="-" + name)
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the files from other users
            os.replace(tmp, os.path.join(save_directory, name))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return save_directory


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def model_card(model: torch.nn.Module, card: dict, has_samples: bool) -> str:
    """The README.md of a pretrained folder: architecture, data, test bits/dim, the training command, samples."""
    m = model.config
    n_params = sum(p.numel() for p in model.parameters())
    bpd = card.get("test_bpd")
    lines = [
        "---",
        "library_name: pytorch",
        "tags: [pixelcnn, image-generation, autoregressive]",
        *([f"datasets: [{card['dataset_id']}]"] if card.get("dataset_id") else []),
        "---",
        "",
        f"# {card.get('title', 'PixelCNN')}",
        "",
        "A class-conditional PixelCNN (van den Oord et al. 2016) from this repository's `pixelcnn` package.",
        "",
        "## Architecture",
        "",
        f"- class `{type(model).__name__}`, {n_params:,} parameters",
        f"- images {m.channels}x{m.image_size[0]}x{m.image_size[1]}, {m.num_classes} classes",
        f"- hidden {m.hidden} (residual blocks carry {2 * m.hidden} channels), {m.blocks} residual blocks, "
        f"first kernel {m.kernel_size}, block kernel {m.block_kernel_size}",
        "",
        "## Data",
        "",
        card.get("data", "not recorded"),
        "",
        "## Result",
        "",
        f"- test bits/dim: **{bpd:.5f}**" if bpd is not None else "- test bits/dim: not measured",
        *([f"- trained for {card['epochs']} epochs ({card['steps']} optimiser steps)"] if card.get("epochs") else []),
        "",
        "## How it was made",
        "",
        "```bash",
        card.get("command", "not recorded"),
        "```",
        "",
        "## Use",
        "",
        "```python",
        "from pixelcnn.model import PixelCNN",
        "",
        'model = PixelCNN.from_pretrained("path/to/this/folder")',
        "```",
        "",
        "or `python -m pixelcnn.sample --checkpoint path/to/this/folder --out samples.png`.",
        "",
    ]
    if has_samples:
        caption = card.get("samples_caption") or "One row per class."
        lines += ["## Samples", "", caption, "", f"![samples]({SAMPLES_NAME})", ""]
    return "\n".join(lines)


def resolve(dir_or_repo_id: str, revision: Optional[str] = None) -> str:
    """A local folder as it is; else a Hub repo id through huggingface_hub's cache (offline: the cache only)."""
    if os.path.isdir(dir_or_repo_id):
        return dir_or_repo_id
    looks_local = dir_or_repo_id.startswith((".", "/", "~")) or dir_or_repo_id.count("/") > 1 or os.sep == "\\"
    if looks_local or dir_or_repo_id.endswith((".pt", ".json")):
        raise PretrainedError(
            f"pretrained folder {dir_or_repo_id!r} does not exist; pass a folder written by save_pretrained "
            f"(config.json + model.safetensors) or a Hub repo id such as 'user/pixelcnn-mnist'"
        )
    hub = _need("huggingface_hub")
    try:
        return hub.snapshot_download(dir_or_repo_id, revision=revision)
    except Exception as e:  # noqa: BLE001  (the hub raises many types; each becomes one clear message)
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false")
        raise PretrainedError(
            f"{dir_or_repo_id!r} is neither a local folder nor a Hub repo id that could be "
            f"{'found in the local cache (HF_HUB_OFFLINE is set)' if offline else 'downloaded'} "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); pass a local folder, or download "
            f"the repo once with network access"
        ) from None


def read_config(folder: str) -> dict:
    path = os.path.join(folder, CONFIG_NAME)
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raise PretrainedError(f"{folder!r} has no {CONFIG_NAME}; it is not a pretrained folder") from None
    except json.JSONDecodeError as e:
        raise PretrainedError(f"{path!r} is not valid JSON: {e}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("model"), dict):
        raise PretrainedError(f"{path!r} is not a pixelcnn pretrained config (no format {FORMAT!r} with a 'model' key)")
    try:
        raw["model"] = ModelConfig.from_dict(raw["model"], source=f"{path} 'model'")
    except (ValueError, TypeError) as e:
        raise PretrainedError(str(e)) from None
    return raw


def load_pretrained(dir_or_repo_id: str, map_location: Any = "cpu", revision: Optional[str] = None):
    """``(model in eval mode, stored config dict)`` from a pretrained folder or repo id; a tensor missing, extra or
    of another shape than the config's model has is named."""
    folder = resolve(dir_or_repo_id, revision)
    raw = read_config(folder)
    model = build_model(raw["model"], raw.get("model_class"))
    weights = os.path.join(folder, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        raise PretrainedError(f"{folder!r} has no {WEIGHTS_NAME}")
    st = _need("safetensors.torch")
    try:
        tensors = st.load_file(weights)
    except Exception as e:  # noqa: BLE001  (safetensors raises its own error types)
        raise PretrainedError(f"{weights!r} is corrupt or not a safetensors file ({type(e).__name__}: {e})") from None
    want = model.state_dict()
    problems = [f"missing tensor {k!r}" for k in want if k not in tensors]
    problems += [f"unexpected tensor {k!r}" for k in tensors if k not in want]
    problems += [
        f"tensor {k!r} has shape {list(tensors[k].shape)}, the config's model needs {list(v.shape)}"
        for k, v in want.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    problems += [
        f"tensor {k!r} has dtype {tensors[k].dtype}, expected {v.dtype}"
        for k, v in want.items()
        if k in tensors and tensors[k].shape == v.shape and tensors[k].dtype != v.dtype
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f" and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise PretrainedError(
            f"{weights!r} does not fit the model {CONFIG_NAME} describes ({shown}); re-save the folder with "
            f"save_pretrained"
        )
    model.load_state_dict(tensors)
    return model.to(map_location).eval(), raw


class HubMixin:
    """``save_pretrained`` / ``from_pretrained`` for a model class whose ``__init__`` takes one ``ModelConfig``."""

    def save_pretrained(self, save_directory: str, card: Optional[dict] = None, samples_png: Optional[str] = None):
        return save_pretrained(self, save_directory, card, samples_png)

    @classmethod
    def from_pretrained(cls, dir_or_repo_id: str, map_location: Any = "cpu", revision: Optional[str] = None):
        model, raw = load_pretrained(dir_or_repo_id, map_location, revision)
        if not isinstance(model, cls):
            raise PretrainedError(f"{dir_or_repo_id!r} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pixelcnn.hub", description="a training checkpoint -> pretrained folder")
    p.add_argument("checkpoint", help="a .pt file written by pixelcnn.train (e.g. runs/pixelcnn/best.pt)")
    p.add_argument("out", help="folder to write (config.json, model.safetensors, README.md, samples.png)")
    p.add_argument("--title", default="PixelCNN")
    p.add_argument("--data", default=None, help="the model card's data paragraph")
    p.add_argument("--command", default=None, help="the command that trained it, for the model card")
    p.add_argument("--samples", default=None, help="a PNG sample grid to include")
    p.add_argument("--samples-caption", default=None)
    p.add_argument("--test-bpd", type=float, default=None, help="default: the checkpoint's best test bits/dim")
    args = p.parse_args(argv)
    from pixelcnn.checkpoint import CheckpointError, load_checkpoint, load_model

    try:
        model, cfg, _ = load_model(args.checkpoint)
        state = load_checkpoint(args.checkpoint)
        card = {
            "title": args.title,
            "data": args.data or f"--dataset {cfg.dataset} --data-dir {cfg.data_dir}",
            "command": args.command or "not recorded",
            "test_bpd": args.test_bpd if args.test_bpd is not None else state["best"],
            "epochs": state["epoch"],
            "steps": state["step"],
            "samples_caption": args.samples_caption,
        }
        extra = {
            "test_bpd": card["test_bpd"],
            "train_config": cfg.to_dict(),
            "class_names": (state.get("data") or {}).get("class_names"),
        }
        save_pretrained(model, args.out, card, args.samples, extra)
    except (CheckpointError, PretrainedError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {os.path.abspath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
