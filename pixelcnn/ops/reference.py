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


# Rows of the flattened activation per batched product in the CPU weight gradient: big enough that each product is
# a real GEMM, small enough that a chunk of the input and the gradient stay in L2 (measured: 4096 beat 256, 1024
# and one product over all rows).
_GEMM_ROWS = 4096
# Input channels from which the GEMM backward pays: the image layer (1 or 3 channels) has products too thin for it.
_GEMM_MIN_CHANNELS = 16


def _gemm_backward_pays(x: torch.Tensor, wm: torch.Tensor) -> bool:
    """True when the cropped conv's backward should run as GEMMs (see ``_CroppedConvCPU``): a CPU conv with enough
    input channels that autograd will differentiate, outside autocast (bf16 keeps oneDNN's own backward)."""
    return (
        x.device.type == "cpu"
        and x.shape[1] >= _GEMM_MIN_CHANNELS
        and torch.is_grad_enabled()
        and (x.requires_grad or wm.requires_grad)
        and not torch.is_autocast_enabled("cpu")
    )


def _live_taps(kh: int, kw: int) -> list[tuple[int, int]]:
    """(row, col) of the cropped kernel's taps that a mask can leave live: every row above the centre, and the
    centre row up to the centre (mask A's centre is live across colour groups; a dead tap only costs time)."""
    p = kh - 1
    return [(i, j) for i in range(kh) for j in range(kw) if i < p or j <= kw // 2]


class _CroppedConvCPU(torch.autograd.Function):
    """``F.conv2d(pad_top(x), wm, bias)`` whose backward is computed as GEMMs (CPU).

    oneDNN's joint backward of the cropped conv on channels-last activations ran ~3x its forward (measured, 3x3
    h=64: forward 9 ms, backward 45 ms at batch 32). Here grad_input is the forward convolution of the gradient
    with the flipped, transposed kernel (oneDNN's fast forward path), and grad_weight is, for each live tap, one
    product ``G^T X`` of the gradient rows with the input rows shifted by the tap's offset: in the padded
    channels-last layout [N, H+p, W+2p, C] flattened to rows, a tap (i, j) is a shift by i*(W+2p)+j rows, so each
    product reads two contiguous slices (batched over chunks of ``_GEMM_ROWS`` rows)."""

    @staticmethod
    def forward(x, wm, bias):
        p = wm.shape[-1] // 2
        return F.conv2d(F.pad(x, (p, p, p, 0)), wm, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, wm, bias = inputs
        ctx.save_for_backward(x, wm)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad):
        x, wm = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        kh, kw = wm.shape[-2:]
        p = kw // 2
        gx = gw = gb = None
        if need_x:
            # y[h, w] = sum_ij x[h+i-p, w+j-p] wm[i, j]  =>  gx[a, b] = sum_ij g[a+p-i, b+p-j] wm[i, j]
            gx = F.conv2d(F.pad(grad, (p, p, 0, p)), wm.flip(2, 3).transpose(0, 1))
        if need_w:
            gw = _weight_grad_gemm(grad, x, kh, kw)
        if need_b and ctx.has_bias:
            gb = grad.sum(dim=(0, 2, 3))
        return gx, gw, gb


def _weight_grad_gemm(grad: torch.Tensor, x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """d/dW of ``F.conv2d(pad_top(x), W)`` for a cropped (kh = p+1) x kw kernel: [Cout, Cin, kh, kw], zero on the taps
    no mask leaves live (see ``_CroppedConvCPU``)."""
    n, cin, h, w = x.shape
    cout = grad.shape[1]
    p = kw // 2
    wp = w + 2 * p
    xs = F.pad(x, (p, p, p, 0)).permute(0, 2, 3, 1).reshape(-1, cin)  # [N*(H+p)*(W+2p), Cin], rows of pixels
    gs = grad.new_zeros(n, h + p, wp, cout)
    gs[:, :h, :w] = grad.permute(0, 2, 3, 1)  # the gradient at the same rows: zero on the padding
    gs = gs.view(-1, cout)
    rows = gs.shape[0]
    gw = grad.new_zeros(cout, cin, kh, kw)
    for i, j in _live_taps(kh, kw):
        shift = i * wp + j
        m = rows - shift  # output row r pairs with input row r + shift; the rows past m are padding
        b = m // _GEMM_ROWS
        full = b * _GEMM_ROWS
        acc = gs[full:m].t() @ xs[shift + full : rows]
        if b:
            chunks_g = gs[:full].view(b, _GEMM_ROWS, cout).transpose(1, 2)
            acc = acc + torch.bmm(chunks_g, xs[shift : shift + full].view(b, _GEMM_ROWS, cin)).sum(0)
        gw[:, :, i, j] = acc
    return gw


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
        if _gemm_backward_pays(x, wm):
            y = _CroppedConvCPU.apply(x, wm, bias)
        elif torch.compiler.is_compiling() and x.shape[1] > 4:
            # symmetric padding, then keep the first H output rows (row r reads input rows r-p..r). Measured in a
            # compiled train step: inductor recomputed the F.pad form in the backward as one slow fused kernel.
            # (Not for the image layer: oneDNN ran its 7x7 on 1 channel several times slower that way.)
            y = F.conv2d(x, wm, bias, padding=p)[:, :, : x.shape[2]]
        else:
            # eager: pad top and sides only; F.pad keeps channels-last in both directions, while the slice above
            # gets an NCHW gradient in its backward for a channels-last activation
            y = F.conv2d(F.pad(x, (p, p, p, 0)), wm, bias)
    return _epilogue(y, cond, residual, relu)
