"""Autoregressive masks for PixelCNN convolutions (docs/DESIGN.md §3) — the only place masks are defined.

Sub-pixel order is raster order over (row, col), then colour channel 0, 1, 2 within a pixel.
Channel ``k`` of any layer belongs to colour group ``k % C``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

MASK_TYPES = ("A", "B", "vA", "vB", "hA", "hB")


def conv_mask(
    out_channels: int, in_channels: int, kernel_size: int, mask_type: str, colors: int, gated_out: bool = False
) -> torch.Tensor:
    """Return the float32 mask ``[out_channels, in_channels, k, k]`` of a masked convolution.

    ``A``/``B`` (the seed's PixelCNN): taps above the centre row, and left of centre in the centre row, connect every
    input to every output; taps right of or below the centre are zero; the centre tap connects input group ``gi``
    to output group ``go`` iff ``gi < go`` (mask A) or ``gi <= go`` (mask B).

    Gated PixelCNN's two stacks (docs/DESIGN.md §3, gated architecture):
    ``vA`` (vertical, first layer) keeps the rows above the centre, ``vB`` (vertical, later layers) the rows up to
    and including the centre row, all columns and channel pairs: the vertical stack only ever carries image rows
    above the current one, so it needs no colour mask. ``hA``/``hB`` (horizontal) keep the centre row left of the
    centre (every channel pair) and the centre tap with mask A / B's colour rule.

    ``gated_out``: the output channels are a gate's two halves ``[tanh | sigmoid]``; channel m belongs to group
    ``(m % (out_channels // 2)) % C``, so both halves of a unit share its group (h need not divide by C).
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if colors < 1:
        raise ValueError(f"colors must be >= 1, got {colors}")
    if gated_out and out_channels % 2:
        raise ValueError(f"a gated layer's output has two equal halves; got {out_channels} channels")
    k, centre = kernel_size, kernel_size // 2
    mask = torch.zeros(out_channels, in_channels, k, k)
    if mask_type[0] == "v":
        mask[:, :, : centre + (mask_type == "vB"), :] = 1.0
        return mask
    if mask_type in ("A", "B"):
        mask[:, :, :centre, :] = 1.0
    mask[:, :, centre, :centre] = 1.0
    units = out_channels // 2 if gated_out else out_channels
    go = ((torch.arange(out_channels) % units) % colors)[:, None]
    gi = (torch.arange(in_channels) % colors)[None, :]
    centre_tap = gi < go if mask_type[-1] == "A" else gi <= go
    mask[:, :, centre, centre] = centre_tap.float()
    return mask


class LiveTaps(NamedTuple):
    """Where a k x k mask keeps taps, as every convolution path visits them (docs/DESIGN.md §6).

    Rows ``row0..row1`` and columns ``col0..col1`` (inclusive, kernel coordinates; the centre is (k//2, k//2))
    bound the taps the mask keeps for some channel pair, and the first ``count`` taps of that rectangle in raster
    order hold them all. With p = k//2: the seed's masks A/B, (p+1) x k with count p*k + p + 1 (the centre row stops
    at the centre; p*k + p for mask A on one colour, whose centre tap is empty); the gated vertical stack, p x k
    (``vA``) or (p+1) x k (``vB``), every tap; the horizontal stack, the one row 1 x (p+1) (1 x p for ``hA`` on one
    colour)."""

    row0: int
    row1: int
    col0: int
    col1: int
    count: int

    @property
    def rows(self) -> int:
        return self.row1 - self.row0 + 1

    @property
    def cols(self) -> int:
        return self.col1 - self.col0 + 1

    def offsets(self) -> list[tuple[int, int]]:
        """The visited taps as (row, col) in kernel coordinates, in raster order."""
        return [(self.row0 + t // self.cols, self.col0 + t % self.cols) for t in range(self.count)]


def live_taps(mask: torch.Tensor) -> LiveTaps:
    """The ``LiveTaps`` of ``mask`` ``[Cout, Cin, k, k]``, read from its values: call it where the mask is built
    (``MaskedConv2d`` keeps the result), not per forward (on a GPU the read is a host sync, and compiled graphs
    cannot read values). A mask that keeps no tap (a 1x1 mask A on one colour) runs as its centre tap, all zeros."""
    k = mask.shape[-1]
    live = mask.detach().reshape(-1, k, k).ne(0).any(0).cpu()  # [k, k]
    if not live.any():
        return LiveTaps(k // 2, k // 2, k // 2, k // 2, 1)
    rows, cols = live.any(1).nonzero().flatten(), live.any(0).nonzero().flatten()
    row0, row1, col0, col1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    in_rectangle = live[row0 : row1 + 1, col0 : col1 + 1].flatten().nonzero().flatten()
    return LiveTaps(row0, row1, col0, col1, int(in_rectangle[-1]) + 1)


def live_rectangle(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """``(row0, row1, col0, col1)`` of ``live_taps(mask)``: the bounding box of the taps ``mask`` keeps."""
    return tuple(live_taps(mask)[:4])
