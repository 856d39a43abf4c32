"""The textbook PixelCNN every benchmark group is measured against: the network as a user writes it from the paper
(van den Oord et al. 2016), with nothing of the project's own code.

- ``MaskedConv2d`` is an ``nn.Conv2d`` subclass that holds its mask as a buffer and multiplies it into the weight in
  every ``forward``, over the full k x k kernel with symmetric padding;
- bias, class vector, ReLU and residual are separate eager ops; NCHW float32 throughout.

``TextbookPixelCNN.from_state_dict(sd)`` reads the shapes (channels, hidden width, blocks, kernel sizes, classes)
off a ``pixelcnn.model.PixelCNN`` state dict and loads its weights, so both compute the same logits (the tests
check <= 1e-4). The one convention taken from the project is the colour grouping of channels: channel ``k`` of a
layer belongs to colour ``k % C`` (the paper splits channels into contiguous thirds; the weights fix the choice).
It imports nothing from ``pixelcnn``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 256


def textbook_mask(out_channels: int, in_channels: int, k: int, mask_type: str, colors: int) -> torch.Tensor:
    """Mask A/B of the paper: every tap above the centre row and left of the centre; at the centre, input colour
    ``gi`` feeds output colour ``go`` iff ``gi < go`` (A) or ``gi <= go`` (B)."""
    mask = torch.ones(out_channels, in_channels, k, k)
    c = k // 2
    mask[:, :, c, c + 1 :] = 0
    mask[:, :, c + 1 :, :] = 0
    for o in range(out_channels):
        for i in range(in_channels):
            go, gi = o % colors, i % colors
            mask[o, i, c, c] = float(gi < go if mask_type == "A" else gi <= go)
    return mask


class MaskedConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight is multiplied by a fixed mask buffer in every forward; bias added separately."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str, colors: int):
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.register_buffer("mask", textbook_mask(out_channels, in_channels, kernel_size, mask_type, colors))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight * self.mask, None, padding=self.padding)
        return y + self.bias.view(1, -1, 1, 1)


class ResidualBlock(nn.Module):
    def __init__(self, hidden: int, k: int, colors: int, num_classes: int):
        super().__init__()
        self.conv_in = MaskedConv2d(2 * hidden, hidden, 1, "B", colors)
        self.conv_mid = MaskedConv2d(hidden, hidden, k, "B", colors)
        self.conv_out = MaskedConv2d(hidden, 2 * hidden, 1, "B", colors)
        self.embed = nn.Embedding(num_classes, hidden) if num_classes else None

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        h = F.relu(x)
        h = self.conv_in(h)
        h = F.relu(h)
        h = self.conv_mid(h)
        if self.embed is not None:
            h = h + self.embed(labels).view(x.shape[0], -1, 1, 1)
        h = F.relu(h)
        h = self.conv_out(h)
        return x + h


class TextbookPixelCNN(nn.Module):
    """Class-conditional PixelCNN: 7x7 mask A, residual blocks (1x1, kxk mask B, 1x1), two 1x1 output layers."""

    def __init__(
        self, channels: int, hidden: int, blocks: int, kernel_size: int, block_kernel_size: int, num_classes: int
    ):
        super().__init__()
        self.channels = channels
        self.conv_first = MaskedConv2d(channels, 2 * hidden, kernel_size, "A", channels)
        self.embed = nn.Embedding(num_classes, 2 * hidden) if num_classes else None
        self.blocks = nn.ModuleList(
            ResidualBlock(hidden, block_kernel_size, channels, num_classes) for _ in range(blocks)
        )
        self.head_hidden = MaskedConv2d(2 * hidden, 2 * hidden, 1, "B", channels)
        self.head_out = MaskedConv2d(2 * hidden, LEVELS * channels, 1, "B", channels)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor]) -> TextbookPixelCNN:
        """The textbook network with the shapes and weights of a PixelCNN state dict."""
        first = state_dict["conv_first.weight"]
        blocks = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
        embed = state_dict.get("embed.weight")
        model = cls(
            channels=first.shape[1],
            hidden=first.shape[0] // 2,
            blocks=blocks,
            kernel_size=first.shape[-1],
            block_kernel_size=state_dict["blocks.0.conv_mid.weight"].shape[-1] if blocks else 3,
            num_classes=embed.shape[0] if embed is not None else 0,
        )
        # masks are the textbook module's own buffers, not read from the state dict
        missing, unexpected = model.load_state_dict(dict(state_dict), strict=False)
        missing = [k for k in missing if not k.endswith(".mask")]
        if missing or unexpected:
            raise ValueError(f"not a PixelCNN state dict: missing {missing}, unexpected {unexpected}")
        return model

    def forward(self, image: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """uint8 ``[N, C, H, W]`` + int64 ``[N]`` -> logits ``[N, 256, C, H, W]``."""
        n, c, h, w = image.shape
        x = image.float() / 127.5 - 1.0
        y = self.conv_first(x)
        if self.embed is not None:
            y = y + self.embed(labels).view(n, -1, 1, 1)
        for block in self.blocks:
            y = block(y, labels)
        y = F.relu(y)
        y = self.head_hidden(y)
        y = F.relu(y)
        y = self.head_out(y)
        return y.view(n, LEVELS, c, h, w)


def textbook_loss(logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Mean 256-way cross-entropy in nats over all sub-pixels."""
    return F.cross_entropy(logits, image.long())


@torch.no_grad()
def textbook_sample_naive(
    model: TextbookPixelCNN, labels: Optional[torch.Tensor], uniforms: torch.Tensor, draw
) -> torch.Tensor:
    """Naive sampling on the textbook model: one full forward per sub-pixel in raster order, then colour. ``draw(
    logits [N, 256], u [N]) -> values [N]`` is the sampling rule (the benchmarks pass the project's draw rule so
    that every sampler's image can be compared)."""
    n, c, h, w = uniforms.shape
    image = torch.zeros(n, c, h, w, dtype=torch.uint8)
    for i in range(h):
        for j in range(w):
            for k in range(c):
                logits = model(image, labels)[:, :, k, i, j]
                image[:, k, i, j] = draw(logits, uniforms[:, k, i, j]).to(torch.uint8)
    return image
