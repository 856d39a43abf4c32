"""The pure-PyTorch masked convolution: ground truth for every fast path, and the CPU default (docs/DESIGN.md §6).

It sits below everything else in ``pixelcnn.ops``: the Triton kernel (``triton_masked_conv``) checks itself against
it, and the registered op (``masked_conv``) falls back to it; it imports neither.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def masked_conv2d_reference(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                            bias: Optional[torch.Tensor] = None, cond: Optional[torch.Tensor] = None,
                            residual: Optional[torch.Tensor] = None, relu: bool = False) -> torch.Tensor:
    """Pure-PyTorch masked convolution with the same epilogue as the fused kernel."""
    y = F.conv2d(x, weight * mask, bias, padding=weight.shape[-1] // 2)
    if cond is not None:
        y = y + cond[:, :, None, None]
    if residual is not None:
        y = y + residual
    return torch.relu(y) if relu else y
