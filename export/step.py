"""The step model: one sub-pixel of the cached incremental sampler (DESIGN.md §5) as a fixed graph, so that any ONNX
runtime can sample without Python.

Inputs (N is dynamic):
  ``position`` int64 [3]        (i, j, c) of the sub-pixel to predict, in raster order, colour innermost
  ``last``     uint8 [N]        the sub-pixel drawn at the step before (ignored at position (0, 0, 0))
  ``label``    int64 [N]        class (class-conditional models only)
  ``cache_0``  float32 [N, C, rows_0, W + 2 p_0]   the first layer's ring buffer (the image, normalised)
  ``cache_b``  float32 [N, h, rows_b, W + 2 p_b]   block b's k x k layer input ring buffer, b = 1..B
Outputs:
  ``logits``   float32 [N, 256]  for sub-pixel (i, j, c) (divide by the temperature, softmax, inverse CDF)
  ``cache_k_next``                the updated buffers: feed them back as ``cache_k`` at the next step

Start with all-zero caches (``cache_shapes``). A step first writes ``last`` into cache_0 at its own position, clears
row i's ring slot when (j, c) = (0, 0), then computes each layer at (i, j) only, reading the cached rows above it,
and stores the k x k layers' inputs at (i, j). Same arithmetic as ``pixelcnn.sampling.CachedSampler``.
"""
from __future__ import annotations

import torch
from torch import nn

from pixelcnn.model import LEVELS, PixelCNN
from pixelcnn.sampling import cache_geometry, cached_conv_weight


class _Spatial(nn.Module):
    """A k x k masked conv evaluated at one position from its ring buffer."""

    def __init__(self, conv):
        super().__init__()
        self.k, self.p, self.rows = cache_geometry(conv)
        self.register_buffer("weight", cached_conv_weight(conv).detach().float())
        self.register_buffer("bias", conv.bias.detach().float())

    def clear_row(self, cache, i, new_row):
        slot = torch.arange(self.rows) == i % self.rows
        return torch.where((slot & new_row)[None, None, :, None], torch.zeros_like(cache), cache)

    def store(self, cache, value, i, j):
        """cache[:, :, i % rows, j + p] = value ([N, C_in]) without in-place writes (exportable)."""
        at = (torch.arange(self.rows) == i % self.rows)[:, None] & (torch.arange(cache.shape[3]) == j + self.p)
        return torch.where(at, value[:, :, None, None], cache)

    def conv_at(self, cache, i, j):
        slots = (i - self.rows + 1 + torch.arange(self.rows)) % self.rows  # rows i-p..i, oldest first
        patch = cache.index_select(2, slots).index_select(3, j + torch.arange(self.k))
        return torch.addmm(self.bias, patch.flatten(1), self.weight)


class _Dense(nn.Module):
    """A 1x1 masked conv as a matrix product at one position."""

    def __init__(self, conv):
        super().__init__()
        self.register_buffer("weight", (conv.weight * conv.mask)[:, :, 0, 0].t().contiguous().detach().float())
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
        w_o = (model.head_out.weight * model.head_out.mask)[:, :, 0, 0].detach().float()
        # output channel v*C + c -> [hidden, v, c], so the step picks colour c with one gather
        self.register_buffer("w_o", w_o.t().reshape(-1, LEVELS, self.channels).contiguous())
        self.register_buffer("b_o", model.head_out.bias.detach().float().reshape(LEVELS, self.channels))

    def spatial(self) -> list[_Spatial]:
        return [self.first] + [b.mid for b in self.blocks]

    def cache_shapes(self) -> list[tuple[int, int, int]]:
        """Per-image shape ``(C_in, rows, W + 2p)`` of each cache input, in input order."""
        return [(s.weight.shape[0] // (s.rows * s.k), s.rows, self.width + 2 * s.p) for s in self.spatial()]

    def initial_caches(self, n: int) -> list[torch.Tensor]:
        return [torch.zeros(n, *shape) for shape in self.cache_shapes()]

    def forward(self, position: torch.Tensor, last: torch.Tensor, label: torch.Tensor, *caches: torch.Tensor):
        i, j, c = position[0], position[1], position[2]
        colors, width = self.channels, self.width
        # the previous sub-pixel in raster order, written into the first layer's buffer
        index = (i * width + j) * colors + c
        prev = (index - 1).clamp(min=0)
        pc, pj, pi = prev % colors, (prev // colors) % width, prev // (colors * width)
        value = last.to(torch.float32) / 127.5 - 1.0
        first = self.first
        at = ((torch.arange(colors) == pc)[:, None, None] & (torch.arange(first.rows) == pi % first.rows)[:, None]
              & (torch.arange(caches[0].shape[3]) == pj + first.p) & (index > 0))
        cache0 = torch.where(at, value[:, None, None, None], caches[0])
        new_row = (j == 0) & (c == 0)
        caches = [s.clear_row(x, i, new_row) for s, x in zip(self.spatial(), [cache0] + list(caches[1:]))]

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
    return ["position", "last", "label"] + [f"cache_{k}" for k in range(len(step.cache_shapes()))]


def output_names(step: StepModule) -> list[str]:
    return ["logits"] + [f"cache_{k}_next" for k in range(len(step.cache_shapes()))]


def example_step_inputs(step: StepModule, batch: int = 2) -> tuple[torch.Tensor, ...]:
    position = torch.tensor([1, 2, step.channels - 1], dtype=torch.int64)
    last = torch.full((batch,), 7, dtype=torch.uint8)
    label = torch.zeros(batch, dtype=torch.int64)
    return (position, last, label, *step.initial_caches(batch))
