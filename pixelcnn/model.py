"""Class-conditional PixelCNN (van den Oord et al. 2016) built from masked convolutions (docs/DESIGN.md §3).

``PixelCNN.forward(image uint8 [N, C, H, W], labels int64 [N]) -> logits [N, 256, C, H, W]``;
``logits.view(N, 256, C, H, W)`` is the layout ``F.cross_entropy`` takes.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from pixelcnn.config import ModelConfig
from pixelcnn.hub import HubMixin
from pixelcnn.masks import conv_mask, live_taps
from pixelcnn.ops import CONV_IMPLS, masked_conv2d
from pixelcnn.pixels import LEVELS, to_unit

__all__ = ["LEVELS", "AutoregressiveModel", "PixelCNN", "MaskedConv2d", "ResidualBlock", "activation_layout"]


def activation_layout(device: torch.device) -> torch.memory_format:
    """Memory format of the hidden activations: channels-last on CPU, where oneDNN ran every layer faster with it
    (docs/DESIGN.md §6; measured, e.g. 3x3 on 64 channels 28x28 ~0.6x the NCHW time), NCHW elsewhere (unmeasured)."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


class MaskedConv2d(nn.Module):
    """k x k convolution whose weight is multiplied by a fixed autoregressive mask (never written in place)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str, colors: int, gated_out=False
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.mask_type, self.colors = kernel_size, mask_type, colors
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.register_buffer(
            "mask", conv_mask(out_channels, in_channels, kernel_size, mask_type, colors, gated_out), persistent=False
        )
        # where the mask is built: its live rectangle, which every conv path crops to (read once, never per call)
        self.live = live_taps(self.mask)
        self.impl = "reference"
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # fan-in counts only the taps the mask keeps, so activations keep their scale through deep stacks
        fan_in = max(1.0, float(self.mask.sum(dim=(1, 2, 3)).mean()))
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -bound * math.sqrt(3.0), bound * math.sqrt(3.0))
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(
        self,
        x: torch.Tensor,
        cond: Optional[torch.Tensor] = None,
        residual: Optional[torch.Tensor] = None,
        relu: bool = False,
    ) -> torch.Tensor:
        return masked_conv2d(x, self.weight, self.mask, self.bias, cond, residual, relu, self.impl, self.live)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"mask={self.mask_type}, colors={self.colors}"
        )


class ResidualBlock(nn.Module):
    """ReLU -> 1x1 (2h->h) -> ReLU -> kxk mask B (h->h) + class vector -> ReLU -> 1x1 (h->2h), plus the input."""

    def __init__(self, hidden: int, kernel_size: int, colors: int, num_classes: int):
        super().__init__()
        self.conv_in = MaskedConv2d(2 * hidden, hidden, 1, "B", colors)
        self.conv_mid = MaskedConv2d(hidden, hidden, kernel_size, "B", colors)
        self.conv_out = MaskedConv2d(hidden, 2 * hidden, 1, "B", colors)
        self.embed = nn.Embedding(num_classes, hidden) if num_classes > 0 else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, std=0.1)

    def forward(self, x: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        cond = self.embed(labels).to(x.dtype) if self.embed is not None else None
        y = self.conv_in(torch.relu(x), relu=True)
        y = self.conv_mid(y, cond=cond, relu=True)
        return self.conv_out(y, residual=x)


class AutoregressiveModel(HubMixin, nn.Module):
    """What every architecture shares: its ``ModelConfig``, input checks, the input map, the conv implementation
    switch, the head (ReLU -> 1x1 -> ReLU -> 1x1 to 256*C logits, zero-initialised: an untrained model predicts
    the uniform distribution, 8 bits/dim exactly) and ``save_pretrained`` / ``from_pretrained`` (``HubMixin``).
    Subclasses build their layers and define ``logits``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(
                f"{type(self).__name__} takes a ModelConfig, got {type(config).__name__}; build one with "
                f"pixelcnn.config.ModelConfig(channels=..., image_size=(h, w), num_classes=..., ...)"
            )
        self.config = config.validate()

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def image_size(self) -> tuple[int, int]:
        return self.config.image_size

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    # --- implementation choice -------------------------------------------------------------------------
    def set_conv_impl(self, impl: str) -> AutoregressiveModel:
        if impl not in CONV_IMPLS:
            raise ValueError(f"unknown conv implementation {impl!r}; expected one of {CONV_IMPLS}")
        for m in self.modules():
            if isinstance(m, MaskedConv2d):
                m.impl = impl
        return self

    def masked_convs(self) -> list[MaskedConv2d]:
        return [m for m in self.modules() if isinstance(m, MaskedConv2d)]

    # --- forward ---------------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """image: uint8 (or float holding 0..255) ``[N, C, H, W]``; labels: int64 ``[N]`` -> ``[N, 256, C, H, W]``."""
        self.validate_inputs(image, labels)
        return self.logits(self.normalize(image), labels)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return to_unit(image, self.head_out.weight.dtype)

    def validate_inputs(self, image: torch.Tensor, labels: Optional[torch.Tensor]) -> None:
        c, (h, w) = self.channels, self.image_size
        if not isinstance(image, torch.Tensor) or image.dim() != 4:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"image must be a 4-D tensor [N, {c}, {h}, {w}], got {shape}")
        if image.shape[1] != c:
            raise ValueError(f"image must have {c} channel(s) [N, {c}, {h}, {w}], got {tuple(image.shape)}")
        if tuple(image.shape[2:]) != (h, w):
            raise ValueError(
                f"image must be {h}x{w} (the model's image size), got {tuple(image.shape[2:])}; "
                f"resize it or train a model for that size"
            )
        if image.dtype != torch.uint8 and not image.is_floating_point():
            raise ValueError(f"image must be uint8 (0..255) or a float tensor holding 0..255, got {image.dtype}")
        data_checks = not (torch.compiler.is_compiling() or torch.compiler.is_exporting())
        if image.is_floating_point() and data_checks and image.numel() and (image.min() < 0 or image.max() > 255):
            raise ValueError(
                f"image values must lie in 0..255, got range [{float(image.min())}, "
                f"{float(image.max())}]; pass raw pixel values, not normalised ones"
            )
        if self.num_classes == 0:
            if labels is not None:
                raise ValueError("this model is unconditional (num_classes=0); pass labels=None")
            return
        if labels is None:
            raise ValueError(f"labels are required: int64 [N] class indices in 0..{self.num_classes - 1}")
        if labels.dim() != 1 or labels.shape[0] != image.shape[0]:
            raise ValueError(f"labels must be [N] = [{image.shape[0]}], got {tuple(labels.shape)}")
        if labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"labels must be int64 class indices, got {labels.dtype}")
        if data_checks and labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"labels must lie in 0..{self.num_classes - 1}, got range [{int(labels.min())}, {int(labels.max())}]"
            )

    def _build_head(self, in_channels: int) -> None:
        channels, hidden = self.config.channels, self.config.hidden
        self.head_hidden = MaskedConv2d(in_channels, 2 * hidden, 1, "B", channels)
        self.head_out = MaskedConv2d(2 * hidden, LEVELS * channels, 1, "B", channels)
        nn.init.zeros_(self.head_out.weight)
        nn.init.zeros_(self.head_out.bias)

    def head(self, y: torch.Tensor) -> torch.Tensor:
        n, _, h, w = y.shape
        y = self.head_hidden(torch.relu(y), relu=True)
        return self.head_out(y).view(n, LEVELS, self.channels, h, w)

    def live_parameters(self) -> int:
        """Parameters that can be non-zero: masked-out weights do not count (docs/DESIGN.md §3)."""
        masked = {id(m.weight): m for m in self.masked_convs()}
        return sum(
            int(masked[id(p)].mask.expand_as(p).count_nonzero()) if id(p) in masked else p.numel()
            for p in self.parameters()
        )


class PixelCNN(AutoregressiveModel):
    """Masked-convolution PixelCNN of the shape ``config`` gives (channels, image size, classes (0: none), hidden
    width, residual blocks, kernel sizes)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        channels, hidden = config.channels, config.hidden
        self.conv_first = MaskedConv2d(channels, 2 * hidden, config.kernel_size, "A", channels)
        self.embed = nn.Embedding(config.num_classes, 2 * hidden) if config.num_classes > 0 else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, std=0.1)
        self.blocks = nn.ModuleList(
            ResidualBlock(hidden, config.block_kernel_size, channels, config.num_classes) for _ in range(config.blocks)
        )
        self._build_head(2 * hidden)

    def logits(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Network on a normalised image ``x`` in [-1, 1]; no input checks (used by exporters and samplers)."""
        cond = self.embed(labels).to(x.dtype) if self.embed is not None else None
        layout = activation_layout(x.device)
        # a 1-channel image is NCHW and channels-last at once, and oneDNN then answers in NCHW: set the layout of
        # the first layer's output too (a no-op when the convolution already returned it)
        y = self.conv_first(x.contiguous(memory_format=layout), cond=cond).contiguous(memory_format=layout)
        for block in self.blocks:
            y = block(y, labels)
        return self.head(y)
