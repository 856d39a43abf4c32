"""Compiled inference: ``compile_for_inference(model)`` -> a model whose network (``logits``, hence ``forward``)
runs through ``torch.compile`` with inductor's weight freezing (docs/DESIGN.md §6).

Freezing turns the weights into constants of the compiled graph: the mask products W*M and their crops are folded
once, and on CPU the convolutions are pre-packed for oneDNN and fused with their bias / ReLU / additions. It takes
effect under ``torch.no_grad()`` (the samplers and evaluation run there); with gradients enabled the graph is
compiled without freezing. The weights are read at the first call: a model trained further afterwards needs a new
``compile_for_inference``. The original model is left as it was.

``max_autotune`` (default: off) lets inductor benchmark GEMM/conv templates at compile time: a much longer first
call, for no gain measured on CPU (2-core AMD EPYC, 28x28x1 h=64 batch 64: 229-237 ms against 233-241 ms without;
32x32x3: within noise).
"""

from __future__ import annotations

import copy
from typing import Optional

import torch

from pixelcnn.model import AutoregressiveModel


def compile_for_inference(model: AutoregressiveModel, max_autotune: bool = False, dynamic: Optional[bool] = None):
    """A shallow copy of ``model`` (same parameters, eval mode) whose ``logits`` is compiled with frozen weights;
    ``forward`` (input checks, normalisation) calls it, and so does the naive sampler."""
    if not isinstance(model, AutoregressiveModel):
        raise TypeError(f"compile_for_inference takes a PixelCNN model, got {type(model).__name__}")
    model.eval()
    fast = copy.copy(model)  # shares parameters, buffers and submodules; only the instance attribute below differs
    compiled = torch.compile(model.logits, options={"max_autotune": bool(max_autotune)}, dynamic=dynamic)
    # Freezing is switched on in the global inductor config for the call, not in the options above: dynamo decides
    # whether parameters become graph constants from the global config at trace time (options reach inductor only,
    # so freezing=True there froze nothing and the convolutions stayed plain aten calls with the weights as inputs).
    fast.logits = torch._inductor.config.patch(freezing=True)(compiled)
    return fast
