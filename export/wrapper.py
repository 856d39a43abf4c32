"""The exported computation: uint8 image [N, C, H, W] + int64 label [N] -> logits [N, 256, C, H, W]."""

from __future__ import annotations

import copy

import torch
from torch import nn

from pixelcnn.model import PixelCNN


class ExportModule(nn.Module):
    """PixelCNN with its normalisation inside and the masked convs on the plain F.conv2d path (custom ops, Triton
    kernels and data-dependent input checks do not belong in an exported graph)."""

    def __init__(self, model: PixelCNN):
        super().__init__()
        self.model = copy.deepcopy(model).eval().set_conv_impl("reference").float()

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        labels = label if self.model.num_classes > 0 else None
        return self.model.logits(self.model.normalize(image), labels)


def example_inputs(model: PixelCNN, batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c, (h, w) = model.channels, model.image_size
    image = torch.randint(0, 256, (batch, c, h, w), generator=g, dtype=torch.uint8)
    label = torch.randint(0, max(1, model.num_classes), (batch,), generator=g, dtype=torch.int64)
    return image, label
