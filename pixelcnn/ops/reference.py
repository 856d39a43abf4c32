"""The pure-PyTorch masked convolutions (docs/DESIGN.md §6): the reference ``F.conv2d`` on the full W*M, ground truth
for every fast path, and beside it the cropped convolution, the default path, which computes the same thing with
fewer FLOPs.

A masked kernel keeps taps only inside its live rectangle (``pixelcnn.masks.LiveTaps``: the seed's masks and the
gated vertical stack's, the rows above the centre and the centre row, (k//2+1) x k or k//2 x k; the gated horizontal
stack's, the centre row's left half and centre, 1 x (k//2+1)), so ``masked_conv2d_cropped`` convolves with that
slice of W*M and pads only the sides the rectangle reaches: a third fewer FLOPs than F.conv2d in a seed 3x3 layer,
~43 % fewer in a 7x7, two thirds fewer in a gated horizontal 3x3. The weight keeps its k x k shape (checkpoints do
not change); the crop is a slice taken in every call, so exported graphs carry it. The rectangle is known where the
mask is built (``MaskedConv2d.live``) and passed in; without it, it is read from the mask (a host sync).

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

from pixelcnn.masks import LiveTaps, live_taps


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


def cropped_weight(weight: torch.Tensor, mask: torch.Tensor, live: LiveTaps) -> torch.Tensor:
    """W*M on the live rectangle: the ``live.rows x live.cols`` kernel the cropped convolution runs."""
    rows, cols = slice(live.row0, live.row1 + 1), slice(live.col0, live.col1 + 1)
    return weight[:, :, rows, cols] * mask[:, :, rows, cols]


def _pad_or_crop(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """``F.pad(x, (left, right, top, bottom))`` with negative amounts as slices (rows or columns no tap reads) rather
    than F.pad's negative padding, which exporters handle less uniformly; F.pad keeps channels-last."""
    h, w = x.shape[-2:]
    x = x[..., max(0, -top) : h - max(0, -bottom), max(0, -left) : w - max(0, -right)]
    pads = (max(0, left), max(0, right), max(0, top), max(0, bottom))
    return F.pad(x, pads) if any(pads) else x


def _live(mask: torch.Tensor, live) -> LiveTaps:
    return live_taps(mask) if live is None else LiveTaps(*live)


def cropped_conv2d_grad_input(
    grad: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, live: Optional[LiveTaps] = None
) -> torch.Tensor:
    """d/dx of ``F.conv2d(x, W*M, padding=k//2)`` from its output gradient, through the cropped kernel: the forward
    convolution of the gradient with the flipped, transposed live rectangle of W*M (y[h, w] = sum_ij x[h+i-p, w+j-p]
    wm[i, j], so gx[a, b] = sum_ij g[a+p-i, b+p-j] wm[i, j]: g padded by p - row0 below, row1 - p above (a crop when
    negative), likewise for the columns)."""
    p, live = weight.shape[-1] // 2, _live(mask, live)
    wm = cropped_weight(weight, mask, live).to(grad.dtype)
    g = _pad_or_crop(grad, live.col1 - p, p - live.col0, live.row1 - p, p - live.row0)
    return F.conv2d(g, wm.flip(2, 3).transpose(0, 1))


def cropped_conv2d_grad_weight(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, live: Optional[LiveTaps] = None
) -> torch.Tensor:
    """d/dW of ``F.conv2d(x, W*M, padding=k//2)`` ([Cout, Cin, k, k] in x's dtype, exactly 0 where M is 0) as GEMMs.

    x is padded (or cropped) to the live rectangle's reach, p - row0 rows above, p - col0 columns left, col1 - p
    right, and laid out channels-last as rows of pixels [N * H' * W', Cin]; the tap (i, j) of the rectangle pairs
    output row r with input row r + (i - row0) * W' + (j - col0), so its gradient is one product ``G^T X`` of two
    contiguous row slices (the gradient placed at the same rows, zero elsewhere), batched over chunks of
    ``_GEMM_ROWS`` rows. Only the visited taps (``live.offsets()``) are computed; every other tap is 0."""
    n, cin, h, w = x.shape
    cout, k = weight.shape[0], weight.shape[-1]
    p, live = k // 2, _live(mask, live)
    grad = grad.to(x.dtype)
    xp = _pad_or_crop(x, p - live.col0, live.col1 - p, p - live.row0, live.row1 - p)
    hp, wp = xp.shape[-2:]  # >= (h, w): the rectangle spans rows row0..row1 and columns col0..col1
    xs = xp.permute(0, 2, 3, 1).reshape(-1, cin)  # [N*H'*W', Cin]
    gs = grad.new_zeros(n, hp, wp, cout)
    gs[:, :h, :w] = grad.permute(0, 2, 3, 1)
    gs = gs.view(-1, cout)
    rows = gs.shape[0]
    gw = x.new_zeros(cout, cin, k, k)
    for i, j in live.offsets():
        shift = (i - live.row0) * wp + (j - live.col0)
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
    live: Optional[LiveTaps] = None,
) -> torch.Tensor:
    """``masked_conv2d_reference`` computed with the live rectangle of the kernel only (see the module docstring)."""
    k = weight.shape[-1]
    p = k // 2
    if k == 1:
        y = F.conv2d(x, weight * mask, bias)
    else:
        live = _live(mask, live)
        wm = cropped_weight(weight, mask, live)
        h, w = x.shape[-2:]
        covered = p >= max(live.row0, live.col0) and 2 * p >= max(live.row0 + live.row1, live.col0 + live.col1)
        if torch.compiler.is_compiling() and x.shape[1] > 4 and covered:
            # symmetric padding, then keep the first H x W outputs (row r reads input rows r+row0-p..r+row1-p).
            # Measured in a compiled train step: inductor recomputed the F.pad form in the backward as one slow
            # fused kernel. (Not for the image layer: oneDNN ran its 7x7 on 1 channel several times slower that way.)
            y = F.conv2d(x, wm, bias, padding=(p - live.row0, p - live.col0))[:, :, :h, :w]
        else:
            # eager: pad only where the rectangle reaches; F.pad keeps channels-last in both directions, while the
            # slice above gets an NCHW gradient in its backward for a channels-last activation
            y = F.conv2d(_pad_or_crop(x, p - live.col0, live.col1 - p, p - live.row0, live.row1 - p), wm, bias)
    return epilogue(y, cond, residual, relu)
