"""Autoregressive masks for PixelCNN convolutions (docs/DESIGN.md §3) — the only place masks are defined.

Sub-pixel order is raster order over (row, col), then colour channel 0, 1, 2 within a pixel.
Channel ``k`` of any layer belongs to colour group ``k % C``.
"""

from __future__ import annotations

import torch

MASK_TYPES = ("A", "B")


def conv_mask(out_channels: int, in_channels: int, kernel_size: int, mask_type: str, colors: int) -> torch.Tensor:
    """Return the float32 mask ``[out_channels, in_channels, k, k]`` of a masked convolution.

    Taps above the centre row, and left of centre in the centre row, connect every input to every output;
    taps right of or below the centre are zero; the centre tap connects input group ``gi`` to output group
    ``go`` iff ``gi < go`` (mask A) or ``gi <= go`` (mask B).
    """
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if colors < 1:
        raise ValueError(f"colors must be >= 1, got {colors}")
    k, centre = kernel_size, kernel_size // 2
    mask = torch.zeros(out_channels, in_channels, k, k)
    mask[:, :, :centre, :] = 1.0
    mask[:, :, centre, :centre] = 1.0
    go = (torch.arange(out_channels) % colors)[:, None]
    gi = (torch.arange(in_channels) % colors)[None, :]
    centre_tap = gi < go if mask_type == "A" else gi <= go
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
