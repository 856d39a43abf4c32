"""Compiled inference: ``compile_for_inference(model)`` -> a model whose network (``logits``, hence ``forward``)
runs through ``torch.compile`` with inductor's weight freezing (docs/DESIGN.md §6).

Freezing turns the weights into constants of the compiled graph: the mask products W*M and their crops are folded
once, and on CPU the convolutions are pre-packed for oneDNN and fused with their bias / ReLU / additions. It takes
effect under ``torch.no_grad()`` (the samplers and evaluation run there); with gradients enabled the graph is
compiled without freezing. The weights are read at the first call: a model trained further afterwards needs a new
``compile_for_inference``. The original model is left as it was.

``max_autotune`` (default: on for CPU) lets inductor benchmark GEMM/conv templates at compile time: a longer first
call for a faster steady state (see the forward benchmark for the measured gain).
"""

from __future__ import annotations

import copy
from typing import Optional

import torch

from pixelcnn.model import PixelCNN


def inference_options(device: torch.device, max_autotune: Optional[bool] = None) -> dict:
    """Inductor options for a frozen inference graph on ``device``."""
    if max_autotune is None:
        max_autotune = device.type == "cpu"
    return {"freezing": True, "max_autotune": bool(max_autotune)}


def compile_for_inference(model: PixelCNN, max_autotune: Optional[bool] = None, dynamic: Optional[bool] = None):
    """A shallow copy of ``model`` (same parameters, eval mode) whose ``logits`` is compiled with frozen weights;
    ``forward`` (input checks, normalisation) calls it, and so does the naive sampler."""
    if not isinstance(model, PixelCNN):
        raise TypeError(f"compile_for_inference takes a PixelCNN, got {type(model).__name__}")
    model.eval()
    device = next(model.parameters()).device
    fast = copy.copy(model)  # shares parameters, buffers and submodules; only the instance attribute below differs
    fast.logits = torch.compile(model.logits, options=inference_options(device, max_autotune), dynamic=dynamic)
    return fast
