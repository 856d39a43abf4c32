"""The masked-convolution op every ``MaskedConv2d`` calls (DESIGN.md §6).

``act(conv(x, W*M) + bias [+ cond] [+ residual])`` with two implementations:

- ``reference``: plain PyTorch, the CPU default: ``F.conv2d`` on the live rows of the masked weight
  (``masked_conv2d_cropped``), tested against ``F.conv2d`` on the full W*M (``masked_conv2d_reference``);
- ``triton``: the registered custom op ``torch.ops.pixelcnn.masked_conv2d`` whose CUDA kernel (see
  ``triton_masked_conv.py``) visits only the live taps and fuses the epilogue. On CPU tensors it runs the
  reference math, unless ``TRITON_INTERPRET=1`` asks for the kernel itself through Triton's interpreter.

Shapes: x ``[N, Cin, H, W]``, weight/mask ``[Cout, Cin, k, k]``, bias ``[Cout]``, cond ``[N, Cout]``,
residual ``[N, Cout, H, W]``; returns ``[N, Cout, H, W]`` in x's dtype.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from pixelcnn.ops.reference import masked_conv2d_cropped, masked_conv2d_reference

CONV_IMPLS = ("reference", "triton")


def _use_triton_kernel(x: torch.Tensor) -> bool:
    return x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


@torch.library.custom_op("pixelcnn::masked_conv2d", mutates_args=())
def _masked_conv2d_op(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, bias: Optional[torch.Tensor],
                      cond: Optional[torch.Tensor], residual: Optional[torch.Tensor], relu: bool) -> torch.Tensor:
    if _use_triton_kernel(x):
        from pixelcnn.ops.triton_masked_conv import masked_conv2d_forward  # imports triton: only when used

        return masked_conv2d_forward(x, weight, mask, bias, cond, residual, relu)
    return masked_conv2d_reference(x, weight, mask, bias, cond, residual, relu)


@_masked_conv2d_op.register_fake
def _(x, weight, mask, bias, cond, residual, relu):
    n, _, h, w = x.shape
    return x.new_empty((n, weight.shape[0], h, w))


@torch.library.custom_op("pixelcnn::masked_conv2d_backward", mutates_args=())
def _masked_conv2d_backward_op(grad_pre: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                               mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the convolution part w.r.t. (x, weight); ``grad_pre`` is the gradient before the ReLU."""
    if _use_triton_kernel(x):
        from pixelcnn.ops.triton_masked_conv import masked_conv2d_backward

        return masked_conv2d_backward(grad_pre, x, weight, mask)
    pad = weight.shape[-1] // 2
    wm = weight * mask
    gx = torch.nn.grad.conv2d_input(x.shape, wm, grad_pre, padding=pad)
    gw = torch.nn.grad.conv2d_weight(x, wm.shape, grad_pre, padding=pad) * mask
    return gx, gw.to(weight.dtype)


@_masked_conv2d_backward_op.register_fake
def _(grad_pre, x, weight, mask):
    return torch.empty_like(x), torch.empty_like(weight)


def _setup_context(ctx, inputs, output):
    x, weight, mask, bias, cond, residual, relu = inputs
    ctx.save_for_backward(x, weight, mask, output if relu else None)
    ctx.relu = relu
    ctx.has = (bias is not None, cond is not None, residual is not None)


def _backward(ctx, grad_out):
    x, weight, mask, out = ctx.saved_tensors
    grad_pre = grad_out * (out > 0).to(grad_out.dtype) if ctx.relu else grad_out
    gx, gw = _masked_conv2d_backward_op(grad_pre.contiguous(), x, weight, mask)
    has_bias, has_cond, has_res = ctx.has
    g_bias = grad_pre.sum(dim=(0, 2, 3)).to(weight.dtype) if has_bias else None
    g_cond = grad_pre.sum(dim=(2, 3)) if has_cond else None
    g_res = grad_pre if has_res else None
    return gx, gw, None, g_bias, g_cond, g_res, None


_masked_conv2d_op.register_autograd(_backward, setup_context=_setup_context)


def masked_conv2d(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, bias: Optional[torch.Tensor] = None,
                  cond: Optional[torch.Tensor] = None, residual: Optional[torch.Tensor] = None,
                  relu: bool = False, impl: str = "reference") -> torch.Tensor:
    """Masked convolution with fused epilogue through the chosen implementation (see module docstring)."""
    if impl == "reference":
        return masked_conv2d_cropped(x, weight, mask, bias, cond, residual, relu)
    if impl == "triton":
        return _masked_conv2d_op(x, weight, mask, bias, cond, residual, relu)
    raise ValueError(f"unknown conv implementation {impl!r}; expected one of {CONV_IMPLS}")
