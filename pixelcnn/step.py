"""The one cached step (docs/DESIGN.md §5): sub-pixel (i, j, c) of the cached sampler, computed from ring buffers.

Every cached sampler written in Python is this module: ``pixelcnn.sampling`` runs it eagerly (method ``cached``),
and the ONNX step model (``export/step.py``) and the ONNX sampler model (``export/sampler.py``) are exported from it.
It is written with tensor positions and functional updates (``index_put``, ``index_select``), so one code path
serves eager PyTorch and the exporters.

Caches: one ring buffer per spatial (k x k) layer, ``[rows = k//2 + 1, W + 2p, C_in, N]`` (p = k//2, batch last: a
store writes one ``[C_in, N]`` slab, a read gathers k columns), all zeros at the start. Cache 0 holds the first
layer's input (the normalised image), cache b >= 1 the input of block b's k x k layer. Row r lives in slot
``r % rows``; a slot reused by a new row is never cleared: its stale values lie right of or below the centre (or at
colour channels the mask hides), where every weight is exactly 0. Only the padding columns must stay zero, and no
store touches them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional, Union

import torch
from torch import nn

from pixelcnn.pixels import LEVELS, to_unit

Index = Union[int, torch.Tensor]


def _index(x: Index, device) -> torch.Tensor:
    """A position as a 1-element int64 tensor (ints from eager loops, 0-d tensors from exported graphs)."""
    return torch.as_tensor(x, dtype=torch.int64, device=device).reshape(1)


def dense_weight(conv) -> torch.Tensor:
    """A 1x1 masked conv's weight as a ``[C_in, C_out]`` matrix for one position."""
    return (conv.weight * conv.mask)[:, :, 0, 0].t().contiguous()


class SpatialLayer(nn.Module):
    """A k x k masked conv evaluated at one position from its ring buffer ``[rows, W + 2p, C_in, N]``.

    Only rows i-p..i are kept: rows below the centre are all masked out."""

    def __init__(self, conv):
        super().__init__()
        self.k = conv.kernel_size
        self.p = self.k // 2
        self.rows = self.p + 1
        self.in_channels = conv.in_channels
        wm = (conv.weight * conv.mask).detach()[:, :, : self.rows, :]  # [C_out, C_in, rows, k]
        # patch layout (rows, k, C_in) -> one [rows * k * C_in, C_out] matrix
        self.register_buffer("weight", wm.permute(2, 3, 1, 0).reshape(-1, conv.out_channels).contiguous())
        self.register_buffer("bias", conv.bias.detach().clone())

    def store(
        self, cache: torch.Tensor, value: torch.Tensor, i: Index, j: Index, channel: Optional[Index] = None
    ) -> torch.Tensor:
        """``cache`` with ``value`` at row i, column j: ``[N, C_in]`` for the whole position, or ``[N]`` for one
        ``channel``. Functional (a new tensor), so it exports as one ScatterND."""
        dev = cache.device
        at = (_index(i, dev) % self.rows, _index(j, dev) + self.p)
        if channel is None:
            return torch.index_put(cache, at, value.t().unsqueeze(0))
        return torch.index_put(cache, at + (_index(channel, dev),), value.unsqueeze(0))

    def at(self, cache: torch.Tensor, i: Index, j: Index) -> torch.Tensor:
        """The conv's output ``[N, C_out]`` at (i, j), reading rows i-p..i and columns j-p..j+p of the buffer."""
        dev = cache.device
        slots = (_index(i, dev) - self.rows + 1 + torch.arange(self.rows, device=dev)) % self.rows  # oldest first
        cols = _index(j, dev) + torch.arange(self.k, device=dev)
        patch = cache.index_select(0, slots).index_select(1, cols)  # [rows, k, C_in, N]
        return torch.addmm(self.bias, patch.permute(3, 0, 1, 2).flatten(1), self.weight)


class DenseLayer(nn.Module):
    """A 1x1 masked conv as a matrix product at one position."""

    def __init__(self, conv):
        super().__init__()
        self.register_buffer("weight", dense_weight(conv).detach())
        self.register_buffer("bias", conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight)


class _Block(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.conv_in, self.mid, self.conv_out = (
            DenseLayer(block.conv_in),
            SpatialLayer(block.conv_mid),
            DenseLayer(block.conv_out),
        )
        self.register_buffer("embed", block.embed.weight.detach().clone() if block.embed is not None else None)


class CachedStep(nn.Module):
    """One sub-pixel of the cached sampler for ``model`` (weights copied, in the model's dtype; ``.to(dtype)``
    converts them).

    ``forward(i, j, c, label, caches) -> (logits [N, 256], caches)``: every layer at (i, j) only. Cache 0 must
    already hold every sub-pixel before (i, j, c) in raster order (``write`` each drawn value); the k x k layers'
    inputs at (i, j) are stored on the way. After the last colour of a pixel its stored values are final (the
    first layer is mask A, so no hidden channel reads the last colour at its own position).
    """

    def __init__(self, model):
        super().__init__()
        self.channels, (self.height, self.width) = model.channels, model.image_size
        self.num_classes = model.num_classes
        self.first = SpatialLayer(model.conv_first)
        self.register_buffer("embed", model.embed.weight.detach().clone() if model.embed is not None else None)
        self.blocks = nn.ModuleList(_Block(b) for b in model.blocks)
        self.head_hidden = DenseLayer(model.head_hidden)
        w_o = dense_weight(model.head_out).detach()
        # output channel v*C + c -> [hidden, v, c], so the step picks colour c with one gather
        self.register_buffer("w_o", w_o.reshape(-1, LEVELS, self.channels).contiguous())
        self.register_buffer("b_o", model.head_out.bias.detach().reshape(LEVELS, self.channels).clone())

    @property
    def dtype(self) -> torch.dtype:
        return self.w_o.dtype

    def spatial(self) -> list[SpatialLayer]:
        return [self.first] + [b.mid for b in self.blocks]

    def cache_shapes(self) -> list[tuple[int, int, int]]:
        """Per-image shape ``(rows, W + 2p, C_in)`` of each cache (the batch dim comes last)."""
        return [(s.rows, self.width + 2 * s.p, s.in_channels) for s in self.spatial()]

    def initial_caches(self, n: int) -> list[torch.Tensor]:
        return [torch.zeros(*shape, n, dtype=self.dtype, device=self.w_o.device) for shape in self.cache_shapes()]

    def write(self, cache0: torch.Tensor, value: torch.Tensor, i: Index, j: Index, c: Index) -> torch.Tensor:
        """Cache 0 with sub-pixel (i, j, c) set to ``value`` (uint8-valued ``[N]``), normalised."""
        return self.first.store(cache0, to_unit(value, self.dtype), i, j, channel=c)

    def forward(
        self, i: Index, j: Index, c: Index, label: Optional[torch.Tensor], caches: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        caches = list(caches)
        x = self.first.at(caches[0], i, j)
        if self.embed is not None:
            x = x + self.embed[label]
        for b, blk in enumerate(self.blocks, start=1):
            y = torch.relu(blk.conv_in(torch.relu(x)))
            caches[b] = blk.mid.store(caches[b], y, i, j)
            y = blk.mid.at(caches[b], i, j)
            if blk.embed is not None:
                y = y + blk.embed[label]
            x = blk.conv_out(torch.relu(y)) + x
        y = torch.relu(self.head_hidden(torch.relu(x)))
        colour = _index(c, y.device)
        w_o = self.w_o.index_select(2, colour).squeeze(2)
        b_o = self.b_o.index_select(1, colour).squeeze(1)
        return torch.addmm(b_o, y, w_o), caches

    def sample_subpixel(
        self,
        i: Index,
        j: Index,
        c: Index,
        label: Optional[torch.Tensor],
        caches: Sequence[torch.Tensor],
        u: torch.Tensor,
        temperature,
        draw: Callable,
        known: Optional[torch.Tensor] = None,
        known_mask: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One sampling step: logits of (i, j, c), ``draw(logits, u, temperature)`` (the draw rule), the known
        value instead where ``known_mask`` [N] is set, and the value written into cache 0. Returns (uint8 value
        ``[N]``, caches). The Python cached sampler and the ONNX sampler model's loop body both run this."""
        logits, caches = self(i, j, c, label, caches)
        value = draw(logits, u, temperature).to(torch.uint8)
        if known is not None:
            value = torch.where(known_mask, known, value)
        caches[0] = self.write(caches[0], value, i, j, c)
        return value, caches
