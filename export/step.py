"""The step model: one sub-pixel of the cached incremental sampler (DESIGN.md §5) as a fixed graph, so that any ONNX
runtime can sample without Python.

Inputs (N is dynamic):
  ``position`` int64 [3]        (i, j, c) of the sub-pixel to predict, in raster order, colour innermost
  ``last``     uint8 [N]        the sub-pixel drawn at the step before (ignored at position (0, 0, 0))
  ``label``    int64 [N]        class (class-conditional models only)
  ``cache_0``  float32 [rows_0, W + 2 p_0, C, N]   the first layer's ring buffer (the image, normalised)
  ``cache_b``  float32 [rows_b, W + 2 p_b, h, N]   block b's k x k layer input ring buffer, b = 1..B
Outputs:
  ``logits``   float32 [N, 256]  for sub-pixel (i, j, c) (divide by the temperature, softmax, inverse CDF)
  ``cache_k_next``                the updated buffers: feed them back as ``cache_k`` at the next step

Start with all-zero caches (``cache_shapes``; batch last). A step first writes ``last`` into cache_0 at its own
position, then computes each layer at (i, j) only, reading the cached rows above it, and stores the k x k layers'
inputs at (i, j). Same arithmetic as ``pixelcnn.sampling.CachedSampler`` (sums in another order).
"""
from __future__ import annotations

import torch
from torch import nn

from pixelcnn.model import LEVELS, PixelCNN
from pixelcnn.sampling import cache_geometry, cached_conv_weight, dense_weight


class _Spatial(nn.Module):
    """A k x k masked conv evaluated at one position from its ring buffer ``[rows, W + 2p, C_in, N]``.

    Batch innermost, so that a store is one ScatterND of a ``[C_in, N]`` slab and a read gathers k columns."""

    def __init__(self, conv):
        super().__init__()
        self.k, self.p, self.rows = cache_geometry(conv)
        self.in_channels = conv.in_channels
        w = cached_conv_weight(conv).detach().float()  # rows (C_in, rows, k) -> reorder to (rows, k, C_in)
        w = w.reshape(self.in_channels, self.rows, self.k, -1).permute(1, 2, 0, 3)
        self.register_buffer("weight", w.reshape(-1, w.shape[-1]).contiguous())
        self.register_buffer("bias", conv.bias.detach().float())

    def store(self, cache, value, i, j, channel=None):
        """cache[i % rows, j + p, :, :] = value.T (value ``[N, C_in]``), or only ``channel`` (value ``[N]``);
        functional (no in-place write), so it exports."""
        at = ((i % self.rows).reshape(1), (j + self.p).reshape(1))
        if channel is None:
            return torch.index_put(cache, at, value.t().unsqueeze(0))
        return torch.index_put(cache, at + (channel.reshape(1),), value.unsqueeze(0))

    def conv_at(self, cache, i, j):
        slots = (i - self.rows + 1 + torch.arange(self.rows)) % self.rows  # rows i-p..i, oldest first
        patch = cache.index_select(1, j + torch.arange(self.k)).index_select(0, slots)  # [rows, k, C_in, N]
        return torch.addmm(self.bias, patch.permute(3, 0, 1, 2).flatten(1), self.weight)


class _Dense(nn.Module):
    """A 1x1 masked conv as a matrix product at one position."""

    def __init__(self, conv):
        super().__init__()
        self.register_buffer("weight", dense_weight(conv).detach().float())
        self.register_buffer("bias", conv.bias.detach().float())

    def forward(self, x):
        return torch.addmm(self.bias, x, self.weight)


class _Block(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.conv_in, self.mid, self.conv_out = _Dense(block.conv_in), _Spatial(block.conv_mid), _Dense(block.conv_out)
        self.register_buffer("embed", block.embed.weight.detach().float() if block.embed is not None else None)


class StepModule(nn.Module):
    def __init__(self, model: PixelCNN):
        super().__init__()
        self.channels, self.width = model.channels, model.image_size[1]
        self.conditional = model.num_classes > 0
        self.first = _Spatial(model.conv_first)
        self.register_buffer("embed", model.embed.weight.detach().float() if model.embed is not None else None)
        self.blocks = nn.ModuleList(_Block(b) for b in model.blocks)
        self.head_hidden = _Dense(model.head_hidden)
        w_o = dense_weight(model.head_out).detach().float()
        # output channel v*C + c -> [hidden, v, c], so the step picks colour c with one gather
        self.register_buffer("w_o", w_o.reshape(-1, LEVELS, self.channels).contiguous())
        self.register_buffer("b_o", model.head_out.bias.detach().float().reshape(LEVELS, self.channels))

    def spatial(self) -> list[_Spatial]:
        return [self.first] + [b.mid for b in self.blocks]

    def cache_shapes(self) -> list[tuple[int, int, int]]:
        """Per-image shape ``(rows, W + 2p, C_in)`` of each cache input (the batch dim comes last), in input order."""
        return [(s.rows, self.width + 2 * s.p, s.in_channels) for s in self.spatial()]

    def initial_caches(self, n: int) -> list[torch.Tensor]:
        return [torch.zeros(*shape, n) for shape in self.cache_shapes()]

    def forward(self, position: torch.Tensor, last: torch.Tensor, *rest: torch.Tensor):
        """``rest``: ``label, *caches`` for a class-conditional model, else the caches (``input_names`` order)."""
        label, caches = (rest[0], rest[1:]) if self.conditional else (None, rest)
        i, j, c = position[0], position[1], position[2]
        colors, width = self.channels, self.width
        # the previous sub-pixel in raster order goes into the first layer's buffer. At (0, 0, 0) there is none:
        # ``last`` then lands on (0, 0, 0) itself, which no weight reads before the real value overwrites it.
        prev = ((i * width + j) * colors + c - 1).clamp(min=0)
        pc, pj, pi = prev % colors, (prev // colors) % width, prev // (colors * width)
        first = self.first
        caches = list(caches)
        caches[0] = first.store(caches[0], last.to(torch.float32) / 127.5 - 1.0, pi, pj, channel=pc)
        # no clearing when a row starts: a ring slot still holds the row `rows` above it, but every stale value
        # sits right of (i, j) or at channels >= c, where the masked weights are exactly 0

        x = first.conv_at(caches[0], i, j)
        if self.conditional:
            x = x + self.embed[label]
        out = [caches[0]]
        for blk, cache in zip(self.blocks, caches[1:]):
            y = torch.relu(blk.conv_in(torch.relu(x)))
            cache = blk.mid.store(cache, y, i, j)
            out.append(cache)
            y = blk.mid.conv_at(cache, i, j)
            if self.conditional:
                y = y + blk.embed[label]
            x = blk.conv_out(torch.relu(y)) + x
        y = torch.relu(self.head_hidden(torch.relu(x)))
        w_o = self.w_o.index_select(2, c.reshape(1)).squeeze(2)
        b_o = self.b_o.index_select(1, c.reshape(1)).squeeze(1)
        return (torch.addmm(b_o, y, w_o), *out)


def input_names(step: StepModule) -> list[str]:
    label = ["label"] if step.conditional else []
    return ["position", "last"] + label + [f"cache_{k}" for k in range(len(step.cache_shapes()))]


def output_names(step: StepModule) -> list[str]:
    return ["logits"] + [f"cache_{k}_next" for k in range(len(step.cache_shapes()))]


def example_step_inputs(step: StepModule, batch: int = 2) -> tuple[torch.Tensor, ...]:
    position = torch.tensor([1, 2, step.channels - 1], dtype=torch.int64)
    last = torch.full((batch,), 7, dtype=torch.uint8)
    label = [torch.zeros(batch, dtype=torch.int64)] if step.conditional else []
    return (position, last, *label, *step.initial_caches(batch))
