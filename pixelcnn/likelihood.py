"""Discrete 256-way likelihood in bits per dimension (docs/DESIGN.md §4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def nll_nats(logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in nats over all N*C*H*W sub-pixels.

    logits ``[N, 256, C, H, W]``, image uint8 ``[N, C, H, W]``."""
    return F.cross_entropy(logits.float(), image.long())


def bits_per_dim(logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Mean NLL in bits per sub-pixel (the number PixelCNN papers report)."""
    return nll_nats(logits, image) / math.log(2.0)
