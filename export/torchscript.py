"""TorchScript export (deprecated in torch 2.14 in favour of torch.export; kept because users ask for it)."""

from __future__ import annotations

import warnings

import torch

from export.wrapper import ExportModule, example_inputs
from pixelcnn.atomic import atomic_path


def export_torchscript(model, path: str) -> str:
    module = ExportModule(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice; the README says to prefer .pt2 / ONNX
        traced = torch.jit.trace(module, example_inputs(model, batch=2), check_trace=False)
        with atomic_path(path) as tmp:
            torch.jit.save(traced, tmp)
    return path


def load_torchscript(path: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(path, map_location="cpu")
