"""The masked-convolution op every ``MaskedConv2d`` calls (docs/DESIGN.md §6).

``act(conv(x, W*M) + bias [+ cond] [+ residual])`` with two implementations:

- ``reference``: plain PyTorch, the CPU default: ``F.conv2d`` on the live rows of the masked weight
  (``masked_conv2d_cropped``), tested against ``F.conv2d`` on the full W*M (``masked_conv2d_reference``); on CPU
  its backward runs GEMM gradient ops (``pixelcnn::cropped_conv2d_grad_*``) from 16 input channels;
- ``triton``: the registered custom op ``torch.ops.pixelcnn.masked_conv2d`` whose CUDA kernel (see
  ``triton_masked_conv.py``) visits only the live taps and fuses the epilogue. On CPU tensors it runs the
  reference math, unless ``TRITON_INTERPRET=1`` asks for the kernel itself through Triton's interpreter.

Shapes: x ``[N, Cin, H, W]``, weight/mask ``[Cout, Cin, k, k]`` (mask from ``pixelcnn.masks.conv_mask``), bias
``[Cout]``, cond ``[N, Cout]``, residual ``[N, Cout, H, W]``; the op returns ``[N, Cout, H, W]`` in x's dtype,
channels-last (the layout its kernel reads and writes), whatever x's layout. Under ``torch.autocast("cuda")`` the op
runs in bf16 (what ``--amp`` asks for). Backward runs grad_input and grad_weight as separate ops, each only
when autograd needs it (the first layer's image needs no gradient).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Optional

import torch

from pixelcnn.masks import LiveTaps, live_taps
from pixelcnn.ops.reference import (
    cropped_conv2d_grad_input,
    cropped_conv2d_grad_weight,
    epilogue,
    masked_conv2d_cropped,
    masked_conv2d_reference,
)

CONV_IMPLS = ("reference", "triton")


def _use_triton_kernel(x: torch.Tensor) -> bool:
    return x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def _empty_channels_last(shape, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(shape, device=like.device, dtype=like.dtype, memory_format=torch.channels_last)


def _as_channels_last(y: torch.Tensor) -> torch.Tensor:
    """``y`` with exactly the strides of a fresh channels-last tensor (the kernel's, whatever the sizes): itself when
    it has them, else a copy."""
    n, c, h, w = y.shape
    if y.stride() == (h * w * c, 1, w * c, c):
        return y
    out = _empty_channels_last(y.shape, y)
    out.copy_(y)
    return out


@torch.library.custom_op("pixelcnn::masked_conv2d", mutates_args=())
def _masked_conv2d_op(
    x: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    bias: Optional[torch.Tensor],
    cond: Optional[torch.Tensor],
    residual: Optional[torch.Tensor],
    relu: bool,
    live: list[int],
) -> torch.Tensor:
    if _use_triton_kernel(x):
        from pixelcnn.ops.triton_masked_conv import masked_conv2d_forward  # imports triton: only when used

        return masked_conv2d_forward(x, weight, mask, bias, cond, residual, relu, LiveTaps(*live))
    return _as_channels_last(masked_conv2d_reference(x, weight, mask, bias, cond, residual, relu))


@_masked_conv2d_op.register_fake
def _(x, weight, mask, bias, cond, residual, relu, live):
    n, _, h, w = x.shape
    return _empty_channels_last((n, weight.shape[0], h, w), x)


def _grad_input_fake(grad, weight, mask, live):
    n, _, h, w = grad.shape
    return _empty_channels_last((n, weight.shape[1], h, w), grad)


def _grad_weight_fake(grad, x, weight, mask, live):
    return torch.empty_like(weight, memory_format=torch.contiguous_format)


# The gradients as GEMMs (pixelcnn/ops/reference.py): the default path's CPU backward (see ``_CroppedConvCPU``), as
# ops of their own so that torch.compile calls them as they are (inductor's code for the padding and slicing inside
# them ran slower than eager's), and the Triton op's grad ops below on tensors its kernels do not take. ``live``: the
# mask's ``LiveTaps`` as 5 ints (known where the mask is built; ops take no NamedTuple).
@torch.library.custom_op("pixelcnn::cropped_conv2d_grad_input", mutates_args=())
def _cropped_grad_input_op(
    grad: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, live: list[int]
) -> torch.Tensor:
    """Gradient of ``conv(x, W*M)`` w.r.t. x (channels-last) from the gradient before the ReLU."""
    return _as_channels_last(cropped_conv2d_grad_input(grad, weight, mask, LiveTaps(*live)))


@torch.library.custom_op("pixelcnn::cropped_conv2d_grad_weight", mutates_args=())
def _cropped_grad_weight_op(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, live: list[int]
) -> torch.Tensor:
    """Gradient of ``conv(x, W*M)`` w.r.t. W (contiguous, W's dtype, exactly 0 on masked taps)."""
    return cropped_conv2d_grad_weight(grad, x, weight, mask, LiveTaps(*live)).to(weight.dtype).contiguous()


@torch.library.custom_op("pixelcnn::masked_conv2d_grad_input", mutates_args=())
def _grad_input_op(grad_pre: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, live: list[int]) -> torch.Tensor:
    """The Triton op's ``_cropped_grad_input_op``: its kernel on CUDA (or under TRITON_INTERPRET=1)."""
    if _use_triton_kernel(grad_pre):
        from pixelcnn.ops.triton_masked_conv import masked_conv2d_grad_input

        return masked_conv2d_grad_input(grad_pre, weight, mask, LiveTaps(*live))
    return _cropped_grad_input_op(grad_pre, weight, mask, live)


@torch.library.custom_op("pixelcnn::masked_conv2d_grad_weight", mutates_args=())
def _grad_weight_op(
    grad_pre: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, live: list[int]
) -> torch.Tensor:
    """The Triton op's ``_cropped_grad_weight_op``: its kernel on CUDA (or under TRITON_INTERPRET=1)."""
    if _use_triton_kernel(x):
        from pixelcnn.ops.triton_masked_conv import masked_conv2d_grad_weight

        return masked_conv2d_grad_weight(grad_pre, x, weight, mask, LiveTaps(*live))
    return _cropped_grad_weight_op(grad_pre, x, weight, mask, live)


for _op in (_cropped_grad_input_op, _grad_input_op):
    _op.register_fake(_grad_input_fake)
for _op in (_cropped_grad_weight_op, _grad_weight_op):
    _op.register_fake(_grad_weight_fake)


def _setup_context(ctx, inputs, output):
    x, weight, mask, bias, cond, residual, relu, live = inputs
    ctx.save_for_backward(x, weight, mask, output if relu else None)
    ctx.relu, ctx.live = relu, live


def _backward(ctx, grad_out):
    x, weight, mask, out = ctx.saved_tensors
    need_x, need_w, _, need_bias, need_cond, need_res, _, _ = ctx.needs_input_grad
    grad_pre = torch.where(out > 0, grad_out, 0) if ctx.relu else grad_out
    gx = _grad_input_op(grad_pre, weight, mask, ctx.live) if need_x else None
    gw = _grad_weight_op(grad_pre, x, weight, mask, ctx.live) if need_w else None
    g_bias = grad_pre.sum(dim=(0, 2, 3)).to(weight.dtype) if need_bias else None
    g_cond = grad_pre.sum(dim=(2, 3)) if need_cond else None
    g_res = grad_pre if need_res else None
    return gx, gw, None, g_bias, g_cond, g_res, None, None


_masked_conv2d_op.register_autograd(_backward, setup_context=_setup_context)
# --amp: the op runs in bf16 under autocast like F.conv2d (a differentiable cast, so fp32 weights get fp32 grads)
for _device in ("cuda", "cpu"):
    torch.library.register_autocast("pixelcnn::masked_conv2d", _device, torch.bfloat16)


# Input channels from which the GEMM backward pays on CPU: the image layer (1 or 3 channels) makes products too thin
# for it (measured: oneDNN's weight gradient 3x faster there).
_GEMM_MIN_CHANNELS = 16


def _gemm_backward_pays(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """True when the default path's backward should be the GEMM gradient ops: a CPU k x k conv (k > 1: oneDNN's
    1x1 backward is a GEMM already, measured as fast) with enough input channels that autograd will differentiate,
    outside autocast (bf16 keeps oneDNN's own backward)."""
    return (
        x.device.type == "cpu"
        and weight.shape[-1] > 1
        and x.shape[1] >= _GEMM_MIN_CHANNELS
        and torch.is_grad_enabled()
        and (x.requires_grad or weight.requires_grad)
        and not torch.is_autocast_enabled("cpu")
    )


class _CroppedConvCPU(torch.autograd.Function):
    """The default path's convolution (``masked_conv2d_cropped`` without epilogue) with GEMM gradient ops as backward.

    Measured on 2 cores (3x3, h=64, batch 32, channels-last): oneDNN's joint backward of the cropped conv took ~45 ms
    against a 9 ms forward; grad_input as a forward conv (~10 ms) plus grad_weight as GEMMs (~13 ms) halve it. The
    grad ops are opaque to torch.compile, which runs them as they are (inductor's code for the padding and slicing
    inside them was slower than eager's)."""

    @staticmethod
    def forward(x, weight, mask, bias, live):
        return masked_conv2d_cropped(x, weight, mask, bias, live=LiveTaps(*live))

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, mask, _, live = inputs
        ctx.save_for_backward(x, weight, mask)
        ctx.live = live

    @staticmethod
    def backward(ctx, grad):
        x, weight, mask = ctx.saved_tensors
        need_x, need_w, _, need_bias, _ = ctx.needs_input_grad
        gx = _cropped_grad_input_op(grad, weight, mask, ctx.live) if need_x else None
        gw = _cropped_grad_weight_op(grad, x, weight, mask, ctx.live) if need_w else None
        g_bias = grad.sum(dim=(0, 2, 3)) if need_bias else None
        return gx, gw, None, g_bias, None


def masked_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    cond: Optional[torch.Tensor] = None,
    residual: Optional[torch.Tensor] = None,
    relu: bool = False,
    impl: str = "reference",
    live: Optional[LiveTaps] = None,
) -> torch.Tensor:
    """Masked convolution with fused epilogue through the chosen implementation (see module docstring).

    ``live``: the mask's ``pixelcnn.masks.LiveTaps``, as ``MaskedConv2d`` keeps it from where it built the mask;
    without it, it is read from the mask's values (a host sync, and a graph break under torch.compile)."""
    live = live_taps(mask) if live is None else LiveTaps(*live)
    if impl == "reference":
        if _gemm_backward_pays(x, weight):
            return epilogue(_CroppedConvCPU.apply(x, weight, mask, bias, list(live)), cond, residual, relu)
        return masked_conv2d_cropped(x, weight, mask, bias, cond, residual, relu, live)
    if impl == "triton":
        return _masked_conv2d_op(x, weight, mask, bias, cond, residual, relu, list(live))
    raise ValueError(f"unknown conv implementation {impl!r}; expected one of {CONV_IMPLS}")


_AUTO_CHOICE: dict = {}


def choose_conv_impl(run_step: Callable[[str], None], device: torch.device, key, iterations: int = 3) -> str:
    """``--conv auto``: the faster implementation for this device and ``key`` (the model's shape), by measurement.

    On CUDA, times ``run_step(impl)`` (a forward+backward with the model switched to ``impl``) for every
    implementation, after one untimed call each (Triton compiles and autotunes there), and caches the choice per
    (device name, key) for the process; the choice and timings are logged. Any other device: ``reference``."""
    if device.type != "cuda":
        return "reference"
    cache_key = (torch.cuda.get_device_name(device), key)
    if cache_key not in _AUTO_CHOICE:
        seconds = {}
        for impl in CONV_IMPLS:
            run_step(impl)
            torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(iterations):
                run_step(impl)
            torch.cuda.synchronize(device)
            seconds[impl] = (time.perf_counter() - start) / iterations
        _AUTO_CHOICE[cache_key] = min(seconds, key=seconds.get)
        logging.getLogger(__name__).warning(
            "--conv auto on %s: %s (%s per forward+backward)",
            cache_key[0],
            _AUTO_CHOICE[cache_key],
            ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in seconds.items()),
        )
    return _AUTO_CHOICE[cache_key]
