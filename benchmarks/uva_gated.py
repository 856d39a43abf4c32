"""The gated PixelCNN of the UvA deep-learning course, re-implemented as a baseline for the architecture comparison
(``benchmarks/compare_architectures.py``).

Source: Phillip Lippe, *UvA DL Notebooks, Tutorial 12: Autoregressive Image Modeling*
(https://uvadlc-notebooks.readthedocs.io/en/latest/tutorial_notebooks/tutorial12/Autoregressive_Image_Modeling.html),
which reports 0.809 test bits/dim on MNIST (50,000 training images, up to 150 epochs on a GPU, Adam 1e-3, batch 128;
the comparison trains it with the project's settings instead, as the other two). Its model, rebuilt here from the
tutorial's description in plain PyTorch with its own masked convolutions (not the project's masked-conv op):

- grey images only; input map ``x / 255 * 2 - 1`` (the project's ``to_unit``, the same numbers);
- first layer: a 3x3 vertical-stack conv and a 1x3 horizontal-stack conv, 1 -> c channels each, both with the
  centre masked (vertical: the centre row and below; horizontal: the centre and the right), no gate;
- seven gated layers, dilations 1, 2, 1, 4, 1, 2, 1: vertical 3x3 conv (rows below the centre masked) and horizontal
  1x3 conv (right of the centre masked), c -> 2c each; ``v' = tanh(a)·σ(b)`` of the vertical features;
  the horizontal features get a 1x1 conv (2c -> 2c) of the vertical features added before their gate, then a 1x1
  conv (c -> c) and the residual; the vertical stack has no residual;
- head: ELU, then a 1x1 conv c -> 256 logits per pixel (default initialisation, not zero);
- masks multiply the weights in every forward, as the tutorial's ``weight.data *= mask``: the same function for the
  live taps, without writing the weights in place.

One addition, so that all three models of the comparison solve the same task: with ``num_classes > 0`` each gated
layer adds a learned class vector to both stacks' pre-activations (van den Oord et al. 2016's conditioning, as the
project's gated model does); ``num_classes=0`` is the tutorial's unconditional model exactly. Class labels carry at
most log2(10) / 784 = 0.004 bits/dim of information about an MNIST image, so conditioning cannot move the comparison
much either way.

``UvaGatedPixelCNN.forward(image uint8 [N, 1, H, W], labels int64 [N]) -> logits [N, 256, 1, H, W]``, the layout
``pixelcnn.likelihood.nll_nats`` and ``pixelcnn.train.loss_fn`` take.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pixelcnn.model import AutoregressiveModel, activation_layout
from pixelcnn.pixels import LEVELS, to_unit

__all__ = ["DILATIONS", "StackConv", "UvaGatedLayer", "UvaGatedPixelCNN"]

DILATIONS = (1, 2, 1, 4, 1, 2, 1)  # the tutorial's gated layers


class StackConv(nn.Module):
    """Convolution whose weight is multiplied by a fixed ``[kh, kw]`` mask, padded (with its dilation) to keep the
    image size: the tutorial's ``MaskedConvolution``."""

    def __init__(self, in_channels: int, out_channels: int, mask: torch.Tensor, dilation: int = 1):
        super().__init__()
        kh, kw = mask.shape
        self.dilation = dilation
        self.padding = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
        # an nn.Conv2d holds the parameters so that they start from PyTorch's default initialisation, as the tutorial's
        self.conv = nn.Conv2d(in_channels, out_channels, (kh, kw))
        self.register_buffer("mask", mask.reshape(1, 1, kh, kw).clone(), persistent=False)

    @classmethod
    def vertical(cls, in_channels: int, out_channels: int, mask_centre: bool, dilation: int = 1) -> StackConv:
        """3x3: the rows above the centre, and the centre row too unless ``mask_centre`` (the first layer)."""
        mask = torch.ones(3, 3)
        mask[2 if not mask_centre else 1 :] = 0
        return cls(in_channels, out_channels, mask, dilation)

    @classmethod
    def horizontal(cls, in_channels: int, out_channels: int, mask_centre: bool, dilation: int = 1) -> StackConv:
        """1x3: the tap left of the centre, and the centre too unless ``mask_centre`` (the first layer)."""
        mask = torch.ones(1, 3)
        mask[0, 2 if not mask_centre else 1 :] = 0
        return cls(in_channels, out_channels, mask, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.conv.weight * self.mask, self.conv.bias, padding=self.padding, dilation=self.dilation)


def gate(z: torch.Tensor) -> torch.Tensor:
    a, b = z.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class UvaGatedLayer(nn.Module):
    """The tutorial's ``GatedMaskedConv`` (c -> c in both stacks), plus the optional class vectors."""

    def __init__(self, hidden: int, dilation: int, num_classes: int):
        super().__init__()
        self.conv_vert = StackConv.vertical(hidden, 2 * hidden, False, dilation)
        self.conv_horiz = StackConv.horizontal(hidden, 2 * hidden, False, dilation)
        self.conv_vert_to_horiz = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.conv_horiz_1x1 = nn.Conv2d(hidden, hidden, 1)
        self.embed_v = nn.Embedding(num_classes, 2 * hidden) if num_classes > 0 else None
        self.embed_h = nn.Embedding(num_classes, 2 * hidden) if num_classes > 0 else None

    def forward(
        self, v: torch.Tensor, h: torch.Tensor, labels: Optional[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        v_feat = self.conv_vert(v)
        h_feat = self.conv_horiz(h)
        if self.embed_v is not None:
            v_feat = v_feat + self.embed_v(labels)[:, :, None, None]
            h_feat = h_feat + self.embed_h(labels)[:, :, None, None]
        h_feat = h_feat + self.conv_vert_to_horiz(v_feat)
        return gate(v_feat), h + self.conv_horiz_1x1(gate(h_feat))


class UvaGatedPixelCNN(nn.Module):
    """The tutorial's gated PixelCNN, ``hidden`` (its ``c_hidden``, 64 in the tutorial) channels per stack."""

    def __init__(self, hidden: int = 64, num_classes: int = 10, image_size: tuple[int, int] = (28, 28)):
        super().__init__()
        if hidden < 1 or num_classes < 0:
            raise ValueError(f"hidden={hidden} must be >= 1 and num_classes={num_classes} >= 0")
        self.channels, self.image_size, self.num_classes, self.hidden = 1, tuple(image_size), num_classes, hidden
        self.conv_vstack = StackConv.vertical(1, hidden, mask_centre=True)
        self.conv_hstack = StackConv.horizontal(1, hidden, mask_centre=True)
        self.layers = nn.ModuleList(UvaGatedLayer(hidden, d, num_classes) for d in DILATIONS)
        self.conv_out = nn.Conv2d(hidden, LEVELS, 1)

    def forward(self, image: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """image: uint8 (or float holding 0..255) ``[N, 1, H, W]``; labels: int64 ``[N]`` -> ``[N, 256, 1, H, W]``."""
        # the project's input checks read only channels, image_size and num_classes, which this model has too
        AutoregressiveModel.validate_inputs(self, image, labels)
        return self.logits(to_unit(image, self.conv_out.weight.dtype), labels)

    def logits(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Network on a normalised image ``x`` in [-1, 1] (the same layout as the project's models on CPU)."""
        x = x.contiguous(memory_format=activation_layout(x.device))
        v, h = self.conv_vstack(x), self.conv_hstack(x)
        for layer in self.layers:
            v, h = layer(v, h, labels)
        n, _, height, width = x.shape
        return self.conv_out(F.elu(h)).view(n, LEVELS, 1, height, width)

    def live_parameters(self) -> int:
        """Parameters that can be non-zero: masked-out weights do not count (the rule of
        ``AutoregressiveModel.live_parameters``)."""
        masks = {id(m.conv.weight): m.mask for m in self.modules() if isinstance(m, StackConv)}
        return sum(
            int(masks[id(p)].expand_as(p).count_nonzero()) if id(p) in masks else p.numel() for p in self.parameters()
        )
