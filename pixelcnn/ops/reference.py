"""The pure-PyTorch masked convolutions (docs/DESIGN.md §6): the reference ``F.conv2d`` on the full W*M, ground truth
for every fast path, and beside it the cropped convolution, the default path, which computes the same thing with
fewer FLOPs.

A k x k masked kernel has live taps only in rows 0..k//2 (the rows below the centre are masked out entirely), so
``masked_conv2d_cropped`` convolves with the (k//2+1) x k slice of W*M and pads the top only: a third fewer FLOPs
in a 3x3 layer, ~43 % fewer in a 7x7. The weight keeps its k x k shape (checkpoints do not change); the crop is a
slice taken in every call, so exported graphs carry it.

This module sits below everything else in ``pixelcnn.ops``: the Triton kernel (``triton_masked_conv``) checks
itself against the reference, and the registered op (``masked_conv``) falls back to it; it imports neither.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def _epilogue(
    y: torch.Tensor, cond: Optional[torch.Tensor], residual: Optional[torch.Tensor], relu: bool
) -> torch.Tensor:
    """The fused kernel's epilogue as separate ops: + class vector, + residual, ReLU."""
    if cond is not None:
        y = y + cond[:, :, None, None]
    if residual is not None:
        y = y + residual
    return torch.relu(y) if relu else y


def masked_conv2d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    cond: Optional[torch.Tensor] = None,
    residual: Optional[torch.Tensor] = None,
    relu: bool = False,
) -> torch.Tensor:
    """Pure-PyTorch masked convolution with the same epilogue as the fused kernel."""
    y = F.conv2d(x, weight * mask, bias, padding=weight.shape[-1] // 2)
    return _epilogue(y, cond, residual, relu)


def masked_conv2d_cropped(
    x: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    cond: Optional[torch.Tensor] = None,
    residual: Optional[torch.Tensor] = None,
    relu: bool = False,
) -> torch.Tensor:
    """``masked_conv2d_reference`` computed with the live rows of the kernel only (see the module docstring)."""
    k = weight.shape[-1]
    p = k // 2
    if k == 1:
        y = F.conv2d(x, weight * mask, bias)
    else:
        wm = weight[:, :, : p + 1] * mask[:, :, : p + 1]
        if torch.compiler.is_compiling() and x.shape[1] > 4:
            # symmetric padding, then keep the first H output rows (row r reads input rows r-p..r). Measured in a
            # compiled train step: inductor recomputed the F.pad form in the backward as one slow fused kernel.
            # (Not for the image layer: oneDNN ran its 7x7 on 1 channel several times slower that way.)
            y = F.conv2d(x, wm, bias, padding=p)[:, :, : x.shape[2]]
        else:
            # eager: pad top and sides only; F.pad keeps channels-last in both directions, while the slice above
            # gets an NCHW gradient in its backward for a channels-last activation
            y = F.conv2d(F.pad(x, (p, p, p, 0)), wm, bias)
    return _epilogue(y, cond, residual, relu)
