"""Pixel values: 256 levels per sub-pixel, and the one map from uint8 values to the network's input range.

``to_unit(image)``: uint8 (or float holding 0..255) -> ``x / 127.5 - 1`` in [-1, 1]. Back-ends that cannot import
this (C++/CUDA: csrc/pixels.h; exported models: the ``pixelcnn.normalisation`` metadata) use the same two constants.
"""

from __future__ import annotations

import torch

LEVELS = 256
SCALE = 127.5  # x / SCALE - OFFSET maps 0..255 onto [-1, 1]
OFFSET = 1.0


def to_unit(image: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8-valued ``image`` (any shape) -> ``dtype`` values ``image / 127.5 - 1``."""
    return image.to(dtype) / SCALE - OFFSET
