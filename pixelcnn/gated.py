"""Gated PixelCNN without the blind spot (van den Oord et al. 2016, *Conditional Image Generation with PixelCNN
Decoders*; docs/DESIGN.md §3, gated architecture).

``GatedPixelCNN.forward(image uint8 [N, C, H, W], labels int64 [N]) -> logits [N, 256, C, H, W]``, like
``PixelCNN``. Two stacks: the vertical one at (i, j) sees image rows < i only (masks ``vA`` then ``vB``), the
horizontal one row i left of j (masks ``hA`` then ``hB``, colour rule at the centre tap) plus a 1x1 link from the
vertical pre-activation at (i, j). Every sub-pixel before p reaches the logits at p: no blind spot.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from pixelcnn.config import ModelConfig
from pixelcnn.model import AutoregressiveModel, MaskedConv2d, activation_layout

__all__ = ["GatedLayer", "GatedPixelCNN", "gate"]


def gate(z: torch.Tensor) -> torch.Tensor:
    """``tanh(a) * sigmoid(b)`` of the channel halves ``z = [a | b]`` of ``[N, 2h, H, W]``."""
    a, b = z.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer of both stacks (in -> h channels each; layer 0 reads the image, in = C).

    ``v_pre = v_conv(v) + embed_v``, ``v' = gate(v_pre)``; ``h_pre = h_conv(h) + link(v_pre) + embed_h``,
    ``h' = proj(gate(h_pre)) (+ h for layers after the first)``."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int, colors: int, num_classes: int, first: bool):
        super().__init__()
        self.first = first
        self.v_conv = MaskedConv2d(in_channels, 2 * hidden, kernel_size, "vA" if first else "vB", colors, True)
        self.h_conv = MaskedConv2d(in_channels, 2 * hidden, kernel_size, "hA" if first else "hB", colors, True)
        # the vertical stack carries rows above only, so its link into the horizontal stack needs no mask
        self.link = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.proj = MaskedConv2d(hidden, hidden, 1, "B", colors)
        self.embed_v = nn.Embedding(num_classes, 2 * hidden) if num_classes > 0 else None
        self.embed_h = nn.Embedding(num_classes, 2 * hidden) if num_classes > 0 else None
        for embed in (self.embed_v, self.embed_h):
            if embed is not None:
                nn.init.normal_(embed.weight, std=0.1)

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, labels: Optional[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cond_v = self.embed_v(labels).to(v.dtype) if self.embed_v is not None else None
        cond_h = self.embed_h(labels).to(h.dtype) if self.embed_h is not None else None
        v_pre = self.v_conv(v, cond=cond_v)
        if self.first:
            # a 1-channel image is NCHW and channels-last at once, and oneDNN then answers in NCHW: layer 0 sets the
            # hidden layout (a no-op when the convolution returned it), else every later layer runs NCHW on CPU
            v_pre = v_pre.contiguous(memory_format=activation_layout(v.device))
        h_pre = self.h_conv(h, cond=cond_h, residual=self.link(v_pre))
        if self.first:
            h_pre = h_pre.contiguous(memory_format=activation_layout(h.device))
        return gate(v_pre), self.proj(gate(h_pre), residual=None if self.first else h)


class GatedPixelCNN(AutoregressiveModel):
    """Gated PixelCNN of the shape ``config`` gives: layer 0 with kernel ``kernel_size`` (k0), then ``blocks``
    gated layers with kernel ``block_kernel_size``, each stack ``hidden`` (h) channels wide; the head of
    ``PixelCNN`` on the horizontal stack."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c, h, n = config.channels, config.hidden, config.num_classes
        self.layers = nn.ModuleList(
            [GatedLayer(c, h, config.kernel_size, c, n, first=True)]
            + [GatedLayer(h, h, config.block_kernel_size, c, n, first=False) for _ in range(config.blocks)]
        )
        self._build_head(h)

    def logits(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Network on a normalised image ``x`` in [-1, 1]; no input checks (used by exporters and samplers)."""
        v = h = x.contiguous(memory_format=activation_layout(x.device))
        for layer in self.layers:
            v, h = layer(v, h, labels)
        return self.head(h)
