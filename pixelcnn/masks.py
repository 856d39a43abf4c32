"""Autoregressive masks for PixelCNN convolutions (docs/DESIGN.md §3) — the only place masks are defined.

Sub-pixel order is raster order over (row, col), then colour channel 0, 1, 2 within a pixel.
Channel ``k`` of any layer belongs to colour group ``k % C``.
"""

from __future__ import annotations

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


def live_taps(kernel_size: int, mask_type: str = "B", colors: int = 1) -> list[tuple[int, int]]:
    """Spatial taps (dy, dx) relative to the centre that a masked kernel can use, in raster order.

    The centre tap is live unless the mask is A on a single colour (no input group precedes group 0):
    a 7x7 mask A on grey images has 24 of 49 taps live, a 3x3 mask B has 5 of 9.
    """
    c = kernel_size // 2
    centre = not (mask_type == "A" and colors == 1)
    return [(dy, dx) for dy in range(-c, 1) for dx in range(-c, c + 1) if dy < 0 or dx < 0 or (dx == 0 and centre)]
