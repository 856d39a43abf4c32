"""The one cached step (docs/DESIGN.md §5): sub-pixel (i, j, c) of the cached sampler, computed from ring buffers.

Every cached sampler written in Python is this module: ``pixelcnn.sampling`` runs it eagerly (method ``cached``),
the ONNX step model (``export/step.py``) is traced from it, and the ONNX sampler model (``export/sampler.py``) is
written from its layers' cropped weights (``SpatialLayer``, ``DenseLayer``, the head), split by row.
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

from pixelcnn.masks import live_rectangle
from pixelcnn.pixels import LEVELS, to_unit

Index = Union[int, torch.Tensor]


def _index(x: Index, device) -> torch.Tensor:
    """A position as a 1-element int64 tensor (ints from eager loops, 0-d tensors from exported graphs)."""
    return torch.as_tensor(x, dtype=torch.int64, device=device).reshape(1)


def dense_weight(conv) -> torch.Tensor:
    """A 1x1 (masked or plain) conv's weight as a ``[C_in, C_out]`` matrix for one position."""
    mask = getattr(conv, "mask", None)
    weight = conv.weight * mask if mask is not None else conv.weight
    return weight[:, :, 0, 0].t().contiguous()


class SpatialLayer(nn.Module):
    """A k x k masked conv evaluated from its ring buffer ``[rows, W + 2p, C_in, N]``, cropped to the live rectangle
    of its mask (``live_rectangle``): the seed's (p+1) x k, a gated vertical stack's p x k or (p+1) x k, a
    horizontal stack's 1 x (p+1). ``at`` evaluates one position, ``row`` all W positions of a row in one product.

    The ring holds rows i-rows+1..i (``rows``: the rectangle's height above the centre plus 1, or more when a cache is
    shared with a taller layer); rows below the centre are always masked out."""

    def __init__(self, conv, rows: Optional[int] = None):
        super().__init__()
        self.k = conv.kernel_size
        self.p = self.k // 2
        r0, r1, c0, c1 = live_rectangle(conv.mask)
        if r1 > self.p:
            raise ValueError(f"mask reads rows below its centre (live rows {r0}..{r1}, centre {self.p})")
        self.dy, self.dx = r0 - self.p, c0 - self.p  # top-left live tap relative to the centre
        self.live_rows, self.live_cols = r1 - r0 + 1, c1 - c0 + 1
        self.rows = rows if rows is not None else self.p - r0 + 1
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        wm = (conv.weight * conv.mask).detach()[:, :, r0 : r1 + 1, c0 : c1 + 1]  # [C_out, C_in, rows, cols]
        # patch layout (rows, cols, C_in) -> one [rows * cols * C_in, C_out] matrix
        self.register_buffer("weight", wm.permute(2, 3, 1, 0).reshape(-1, conv.out_channels).contiguous())
        self.register_buffer("bias", conv.bias.detach().clone())

    def cache_shape(self, width: int) -> tuple[int, int, int]:
        """Per-image shape ``(rows, W + 2p, C_in)`` of this layer's ring buffer (the batch dim comes last)."""
        return (self.rows, width + 2 * self.p, self.in_channels)

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

    def store_row(self, cache: torch.Tensor, value: torch.Tensor, i: Index) -> torch.Tensor:
        """``cache`` with row i set to ``value`` ``[W, N, C_in]`` (all W positions; the padding stays zero)."""
        dev = cache.device
        width = cache.shape[1] - 2 * self.p
        at = (_index(i, dev) % self.rows, torch.arange(width, device=dev) + self.p)
        return torch.index_put(cache, at, value.permute(0, 2, 1))

    def _slots(self, i: Index, dev) -> torch.Tensor:
        return (_index(i, dev) + self.dy + torch.arange(self.live_rows, device=dev)) % self.rows  # oldest first

    def at(self, cache: torch.Tensor, i: Index, j: Index) -> torch.Tensor:
        """The conv's output ``[N, C_out]`` at (i, j), reading the live rows and columns around it."""
        dev = cache.device
        cols = _index(j, dev) + self.p + self.dx + torch.arange(self.live_cols, device=dev)
        patch = cache.index_select(0, self._slots(i, dev)).index_select(1, cols)  # [rows, cols, C_in, N]
        return torch.addmm(self.bias, patch.permute(3, 0, 1, 2).flatten(1), self.weight)

    def row(self, cache: torch.Tensor, i: Index) -> torch.Tensor:
        """The conv's output at every position of row i as one product with M = W * N rows: ``[W * N, C_out]``,
        row ``w * N + n``."""
        dev = cache.device
        width = cache.shape[1] - 2 * self.p
        taps = torch.arange(self.live_cols, device=dev)
        cols = (torch.arange(width, device=dev)[:, None] + self.p + self.dx + taps[None, :]).flatten()
        patch = cache.index_select(0, self._slots(i, dev)).index_select(1, cols)  # [rows, W * cols, C_in, N]
        patch = patch.unflatten(1, (width, self.live_cols)).permute(1, 4, 0, 2, 3)  # [W, N, rows, cols, C_in]
        return torch.addmm(self.bias, patch.flatten(2).flatten(0, 1), self.weight)


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


class _Step(nn.Module):
    """What every cached step shares: the image geometry, the head (``head_hidden``, then ``head_out`` for colour c
    only), the image cache (cache 0, read through ``self.image``), the caches' allocation and the sampling step.

    A step is ``start_row`` (work done once per row, as soon as the row above is complete; nothing for the seed's
    architecture) plus ``subpixel`` (the work of one sub-pixel); ``forward`` runs both as one sub-pixel needs them."""

    per_row = False  # True: start_row does work, and samplers call it at (i, 0, 0)

    def _init_head(self, model) -> None:
        self.channels, (self.height, self.width) = model.channels, model.image_size
        self.num_classes = model.num_classes
        self.head_hidden = DenseLayer(model.head_hidden)
        w_o = dense_weight(model.head_out).detach()
        # output channel v*C + c -> [hidden, v, c], so the step picks colour c with one gather
        self.register_buffer("w_o", w_o.reshape(-1, LEVELS, self.channels).contiguous())
        self.register_buffer("b_o", model.head_out.bias.detach().reshape(LEVELS, self.channels).clone())

    @property
    def dtype(self) -> torch.dtype:
        return self.w_o.dtype

    def cache_shapes(self) -> list[tuple[int, ...]]:
        """Per-image shape of each cache (the batch dim comes last)."""
        raise NotImplementedError

    def initial_caches(self, n: int) -> list[torch.Tensor]:
        return [torch.zeros(*shape, n, dtype=self.dtype, device=self.w_o.device) for shape in self.cache_shapes()]

    def write(self, cache0: torch.Tensor, value: torch.Tensor, i: Index, j: Index, c: Index) -> torch.Tensor:
        """Cache 0 with sub-pixel (i, j, c) set to ``value`` (uint8-valued ``[N]``), normalised."""
        return self.image.store(cache0, to_unit(value, self.dtype), i, j, channel=c)

    def head(self, x: torch.Tensor, c: Index) -> torch.Tensor:
        """Logits ``[N, 256]`` of colour c from the last hidden features ``x`` ``[N, h]`` at one position."""
        y = torch.relu(self.head_hidden(torch.relu(x)))
        colour = _index(c, y.device)
        w_o = self.w_o.index_select(2, colour).squeeze(2)
        b_o = self.b_o.index_select(1, colour).squeeze(1)
        return torch.addmm(b_o, y, w_o)

    def start_row(self, i: Index, label: Optional[torch.Tensor], caches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Caches after the once-per-row work for row i (row i-1 must be complete)."""
        return list(caches)

    def subpixel(
        self, i: Index, j: Index, c: Index, label: Optional[torch.Tensor], caches: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    def forward(
        self, i: Index, j: Index, c: Index, label: Optional[torch.Tensor], caches: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.subpixel(i, j, c, label, caches)

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
        """One sampling step (``start_row`` already run for row i): logits of (i, j, c), ``draw(logits, u,
        temperature)`` (the draw rule), the known value instead where ``known_mask`` [N] is set, and the value written
        into cache 0. Returns (uint8 value ``[N]``, caches). The Python cached sampler runs this; the ONNX sampler
        model writes the same step out row-split (``export/sampler.py``)."""
        logits, caches = self.subpixel(i, j, c, label, caches)
        value = draw(logits, u, temperature).to(torch.uint8)
        if known is not None:
            value = torch.where(known_mask, known, value)
        caches[0] = self.write(caches[0], value, i, j, c)
        return value, caches


class CachedStep(_Step):
    """One sub-pixel of the cached sampler for a ``PixelCNN`` (weights copied, in the model's dtype; ``.to(dtype)``
    converts them).

    ``forward(i, j, c, label, caches) -> (logits [N, 256], caches)``: every layer at (i, j) only. Cache 0 must
    already hold every sub-pixel before (i, j, c) in raster order (``write`` each drawn value); the k x k layers'
    inputs at (i, j) are stored on the way. After the last colour of a pixel its stored values are final (the
    first layer is mask A, so no hidden channel reads the last colour at its own position).
    """

    def __init__(self, model):
        super().__init__()
        self._init_head(model)
        self.first = SpatialLayer(model.conv_first)
        self.register_buffer("embed", model.embed.weight.detach().clone() if model.embed is not None else None)
        self.blocks = nn.ModuleList(_Block(b) for b in model.blocks)

    @property
    def image(self) -> SpatialLayer:
        return self.first

    def spatial(self) -> list[SpatialLayer]:
        return [self.first] + [b.mid for b in self.blocks]

    def cache_shapes(self) -> list[tuple[int, int, int]]:
        """Per-image shape ``(rows, W + 2p, C_in)`` of each cache (the batch dim comes last)."""
        return [s.cache_shape(self.width) for s in self.spatial()]

    def subpixel(
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
        return self.head(x, c), caches


def gate(z: torch.Tensor) -> torch.Tensor:
    """``tanh(a) * sigmoid(b)`` of the pre-activation halves ``z = [a | b]`` on the last dim."""
    h = z.shape[-1] // 2
    return torch.tanh(z[..., :h]) * torch.sigmoid(z[..., h:])


class _GatedLayer(nn.Module):
    """A gated layer's cached form: ``v`` (vertical conv, evaluated per row), ``h`` (horizontal conv, per
    sub-pixel), ``link`` and ``proj`` (1x1 products), the class vectors of both stacks."""

    def __init__(self, layer, first: bool):
        super().__init__()
        self.v = SpatialLayer(layer.v_conv)
        # layer 0's horizontal conv reads the image cache, whose ring the vertical conv's rows size
        self.h = SpatialLayer(layer.h_conv, rows=self.v.rows if first else None)
        self.link, self.proj = DenseLayer(layer.link), DenseLayer(layer.proj)
        for name in ("embed_v", "embed_h"):
            embed = getattr(layer, name)
            self.register_buffer(name, embed.weight.detach().clone() if embed is not None else None)


class GatedCachedStep(_Step):
    """The cached step of a ``GatedPixelCNN`` (docs/DESIGN.md, gated schedule).

    ``start_row(i)`` (at (i, 0, 0), row i-1 complete) runs the vertical stack for all W positions of row i at once:
    per layer one product with M = W * N rows from the ring buffer of its input rows (the image for layer 0, the
    previous layer's vertical output for the others), storing each layer's gated output into the next layer's ring
    and keeping ``link(v_pre) + embed_h`` of every layer and position in the ``link`` state. ``subpixel(i, j, c)``
    runs only the horizontal stack at (i, j): the 1 x (p+1) conv over its input's one-row buffer, plus the stored
    link term, the gate, ``proj``, the residual, then the head.

    Caches (batch last): 0 the image ``[p0+1, W + 2p0, C]``; then per layer b >= 1 its vertical input ring
    ``[p+1, W + 2p, h]`` and its horizontal input row ``[1, W + 2p, h]``; last the link state ``[L, W, 2h]``.
    A row slot reused by a new row is not cleared: stale values sit where the cropped weights do not read.
    """

    per_row = True

    def __init__(self, model):
        super().__init__()
        self._init_head(model)
        first, *rest = model.layers
        self.layers = nn.ModuleList([_GatedLayer(first, True)] + [_GatedLayer(layer, False) for layer in rest])
        self.hidden2 = self.layers[0].link.weight.shape[1]

    @property
    def image(self) -> SpatialLayer:
        return self.layers[0].v

    def subpixel_caches(self) -> list[int]:
        """Indices of the caches ``subpixel`` (and ``write``) change: the image and the horizontal input rows; the
        others change only in ``start_row``."""
        return [0] + [2 * b for b in range(1, len(self.layers))]

    def cache_shapes(self) -> list[tuple[int, int, int]]:
        shapes = [self.image.cache_shape(self.width)]
        for layer in self.layers[1:]:
            shapes += [layer.v.cache_shape(self.width), layer.h.cache_shape(self.width)]
        return shapes + [(len(self.layers), self.width, self.hidden2)]

    def start_row(self, i: Index, label: Optional[torch.Tensor], caches: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        caches = list(caches)
        links = []
        for b, layer in enumerate(self.layers):
            pre = layer.v.row(caches[2 * b - 1 if b else 0], i).unflatten(0, (self.width, -1))  # [W, N, 2h]
            if layer.embed_v is not None:
                pre = pre + layer.embed_v[label]
            link = layer.link(pre.flatten(0, 1)).unflatten(0, (self.width, -1))
            links.append(link + layer.embed_h[label] if layer.embed_h is not None else link)
            if b + 1 < len(self.layers):
                nxt = self.layers[b + 1].v
                caches[2 * b + 1] = nxt.store_row(caches[2 * b + 1], gate(pre), i)
        caches[-1] = torch.stack(links).transpose(2, 3).clone(memory_format=torch.contiguous_format)  # [L, W, 2h, N]
        return caches

    def subpixel(
        self, i: Index, j: Index, c: Index, label: Optional[torch.Tensor], caches: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        caches = list(caches)
        link = caches[-1].index_select(1, _index(j, caches[-1].device)).squeeze(1).permute(0, 2, 1)  # [L, N, 2h]
        first = self.layers[0]
        x = first.proj(gate(first.h.at(caches[0], i, j) + link[0]))
        for b, layer in enumerate(self.layers[1:], start=1):
            caches[2 * b] = layer.h.store(caches[2 * b], x, i, j)
            x = layer.proj(gate(layer.h.at(caches[2 * b], i, j) + link[b])) + x
        return self.head(x, c), caches

    def forward(
        self, i: Index, j: Index, c: Index, label: Optional[torch.Tensor], caches: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``start_row`` where (j, c) = (0, 0), then ``subpixel``."""
        if isinstance(j, int) and isinstance(c, int):
            if j == 0 and c == 0:
                caches = self.start_row(i, label, caches)
            return self.subpixel(i, j, c, label, caches)
        # tensor positions (exported graphs): the row work as a loop run once at (i, 0, 0) and never elsewhere (an
        # ONNX Loop with trip count 0 or 1; torch.cond's If did not convert with a dynamic batch), carrying only the
        # caches start_row changes
        from torch._higher_order_ops.while_loop import while_loop

        caches = list(caches)
        dev = self.w_o.device
        runs = ((_index(j, dev) == 0) & (_index(c, dev) == 0)).to(torch.int64).reshape(())
        changed = [k for k in range(len(caches)) if k not in self.subpixel_caches()]

        def once(k, *state):
            return k < runs

        def row(k, batch, *state):
            full = list(caches)
            for q, x in zip(changed, state, strict=True):
                full[q] = x
            full = self.start_row(i, label, full)
            return (k + 1, batch.clone(), *(full[q] for q in changed))

        # ``batch`` (a [N] tensor, carried unchanged) gives the loop body the batch size as a tensor size: without a
        # label input the tracer otherwise reads it from a cache's stride, which the ONNX exporter cannot convert
        batch = caches[0].new_zeros(caches[0].shape[-1])
        _, _, *state = while_loop(
            once, row, (torch.zeros((), dtype=torch.int64, device=dev), batch, *(caches[q] for q in changed))
        )
        for q, x in zip(changed, state, strict=True):
            caches[q] = x
        return self.subpixel(i, j, c, label, caches)


def cached_step(model) -> _Step:
    """The cached step of ``model``'s architecture."""
    from pixelcnn.gated import GatedPixelCNN

    return GatedCachedStep(model) if isinstance(model, GatedPixelCNN) else CachedStep(model)
