"""The pure-PyTorch masked convolutions (docs/DESIGN.md §6): the reference ``F.conv2d`` on the full W*M, ground truth
for every fast path, and beside it the cropped convolution, the default path, which computes the same thing with
fewer FLOPs.

A k x k masked kernel has live taps only in rows 0..k//2 (the rows below the centre are masked out entirely), so
``masked_conv2d_cropped`` convolves with the (k//2+1) x k slice of W*M and pads the top only: a third fewer FLOPs
in a 3x3 layer, ~43 % fewer in a 7x7. The weight keeps its k x k shape (checkpoints do not change); the crop is a
slice taken in every call, so exported graphs carry it.

Beside them, the gradients of the cropped convolution computed as GEMMs (``cropped_conv2d_grad_input`` and
``cropped_conv2d_grad_weight``): the CPU backward of the default path and of the registered op, tested against
autograd of the reference.

This module sits below everything else in ``pixelcnn.ops``: the Triton kernel (``triton_masked_conv``) checks
itself against the reference, and the registered op (``masked_conv``) falls back to it; it imports neither.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def epilogue(
    y: torch.Tensor, cond: Optional[torch.Tensor], residual: Optional[torch.Tensor], relu: bool
) -> torch.Tensor:
    """The fused kernel's epilogue as separate ops: + class vector, + residual, ReLU."""
    if cond is not None:
        y = y + cond[:, :, None, None]
    if residual is not None:
        y = y + residual
    return torch.relu(y) if relu else y


# Rows of the flattened activation per batched product in ``cropped_conv2d_grad_weight``: big enough that each
# product is a real GEMM, small enough that a chunk of the input and of the gradient stay in L2 (measured on 2 cores:
# 4096 beat 256, 1024 and one product over all rows).
_GEMM_ROWS = 4096


def cropped_weight(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The live rows of W*M: the (k//2+1) x k kernel the cropped convolution runs."""
    p = weight.shape[-1] // 2
    return weight[:, :, : p + 1] * mask[:, :, : p + 1]


def _live_taps(mask: torch.Tensor) -> list[tuple[int, int]]:
    """(row, col) of the cropped kernel's taps the mask keeps for some channel pair: the seed's mask A/B, the gated
    stacks' vertical (every column of the rows it keeps) and horizontal (centre row only) masks alike. Read from the
    mask's values (a host sync of k*k flags; the grad ops run eagerly, outside any compiled graph)."""
    p = mask.shape[-1] // 2
    live = mask[:, :, : p + 1].detach().ne(0).any(1).any(0).cpu()
    return [(int(i), int(j)) for i, j in live.nonzero()]


def cropped_conv2d_grad_input(grad: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """d/dx of ``F.conv2d(x, W*M, padding=k//2)`` from its output gradient, through the cropped kernel: the forward
    convolution of the gradient, padded at the bottom and sides, with the flipped, transposed live rows of W*M
    (y[h, w] = sum_ij x[h+i-p, w+j-p] wm[i, j], so gx[a, b] = sum_ij g[a+p-i, b+p-j] wm[i, j])."""
    p = weight.shape[-1] // 2
    wm = cropped_weight(weight, mask).to(grad.dtype)
    return F.conv2d(F.pad(grad, (p, p, 0, p)), wm.flip(2, 3).transpose(0, 1))


def cropped_conv2d_grad_weight(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """d/dW of ``F.conv2d(x, W*M, padding=k//2)`` ([Cout, Cin, k, k] in x's dtype, exactly 0 where M is 0) as GEMMs.

    In the top-padded channels-last layout [N, H+p, W+2p, C] flattened to rows of pixels, the tap (i, j) of the
    cropped kernel pairs output row r with input row r + i*(W+2p) + j, so its gradient is one product ``G^T X`` of
    two contiguous row slices (the gradient placed at the same rows, zero on the padding), batched over chunks of
    ``_GEMM_ROWS`` rows. Only the live taps are computed; the rows below the centre are 0."""
    n, cin, h, w = x.shape
    cout, k = weight.shape[0], weight.shape[-1]
    p = k // 2
    wp = w + 2 * p
    grad = grad.to(x.dtype)
    xs = F.pad(x, (p, p, p, 0)).permute(0, 2, 3, 1).reshape(-1, cin)  # [N*(H+p)*(W+2p), Cin]
    gs = grad.new_zeros(n, h + p, wp, cout)
    gs[:, :h, :w] = grad.permute(0, 2, 3, 1)
    gs = gs.view(-1, cout)
    rows = gs.shape[0]
    gw = x.new_zeros(cout, cin, k, k)
    for i, j in _live_taps(mask):
        shift = i * wp + j
        m = rows - shift  # output row r pairs with input row r + shift; rows past m are padding
        b = m // _GEMM_ROWS
        full = b * _GEMM_ROWS
        acc = gs[full:m].t() @ xs[shift + full : rows]
        if b:
            chunks = gs[:full].view(b, _GEMM_ROWS, cout).transpose(1, 2)
            acc = acc + torch.bmm(chunks, xs[shift : shift + full].view(b, _GEMM_ROWS, cin)).sum(0)
        gw[:, :, i, j] = acc
    return gw * mask.to(gw.dtype)


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
    return epilogue(y, cond, residual, relu)


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
        wm = cropped_weight(weight, mask)
        if torch.compiler.is_compiling() and x.shape[1] > 4:
            # symmetric padding, then keep the first H output rows (row r reads input rows r-p..r). Measured in a
            # compiled train step: inductor recomputed the F.pad form in the backward as one slow fused kernel.
            # (Not for the image layer: oneDNN ran its 7x7 on 1 channel several times slower that way.)
            y = F.conv2d(x, wm, bias, padding=p)[:, :, : x.shape[2]]
        else:
            # eager: pad top and sides only; F.pad keeps channels-last in both directions, while the slice above
            # gets an NCHW gradient in its backward for a channels-last activation
            y = F.conv2d(F.pad(x, (p, p, p, 0)), wm, bias)
    return epilogue(y, cond, residual, relu)
