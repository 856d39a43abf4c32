"""The sampler model: whole images in one ONNX ``run`` (docs/DESIGN.md §5).

Interface (names are the contract; N is dynamic):

  inputs   ``label``       int64 [N]            class per image (class-conditional models only; absent otherwise)
           ``uniforms``    float32 [N, C, H, W]  the sampling contract's U, in [0, 1)
           ``temperature`` float32 []            softmax temperature, > 0 (the graph divides by it in float64)
           ``known``       uint8 [N, C, H, W]    completion: values to keep (anything where known_mask is false)
           ``known_mask``  bool [N, C, H, W]     true = copy ``known``, false = draw; all false = plain sampling
  output   ``image``       uint8 [N, C, H, W]

Metadata props: those of every export (``pixelcnn.image_size``, ``pixelcnn.channels``, ``pixelcnn.num_classes``,
``pixelcnn.levels``, ``pixelcnn.normalisation``, ``pixelcnn.config``, ...) plus ``pixelcnn.graph = "sampler"``
and ``pixelcnn.precision`` (the network's float type; the draw is always float64).

Inside: one ONNX ``Loop`` over the H*W*C sub-pixel steps in raster order (row, column, colour). Its body is the
one cached step (``pixelcnn.step.CachedStep.sample_subpixel``) with the ring buffers and the image as
loop-carried state, and the draw rule (``pixelcnn.draw.draw_rule``: float64, exp from +, *, floor and exact powers
of two, CDF in 32 chunks of 8) inside the graph. The graph cannot raise errors: front-ends check the inputs
(``export/ort_sampler.py`` for Python, ``export/examples/node/sample.js``).

The same uniforms give the same image as ``pixelcnn.sampling.sample(..., temperature=T32)`` with
``T32 = float(numpy.float32(T))`` (exactly, when both run in float64; in float32 up to draws at a CDF boundary).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from pixelcnn.draw import draw_rule
from pixelcnn.model import PixelCNN
from pixelcnn.step import cached_step


def _draw(logits: torch.Tensor, u: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    return draw_rule(logits.to(torch.float64), u.to(torch.float64), temperature)


def _raster(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[H * W * C, N]``: row t is sub-pixel t in sampling order, batch last."""
    return x.permute(2, 3, 1, 0).reshape(-1, x.shape[0])


class SamplerModule(nn.Module):
    """Class-conditional sampler graph: ``forward(label, uniforms, temperature, known, known_mask) -> image``."""

    def __init__(self, model: PixelCNN, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.step = cached_step(model).to(dtype)
        self.conditional = model.num_classes > 0

    def forward(
        self,
        label: Optional[torch.Tensor],
        uniforms: torch.Tensor,
        temperature: torch.Tensor,
        known: torch.Tensor,
        known_mask: torch.Tensor,
    ) -> torch.Tensor:
        from torch._higher_order_ops.while_loop import while_loop

        step = self.step
        colours, height, width = step.channels, step.height, step.width
        n = uniforms.shape[0]
        u, kv, km = _raster(uniforms), _raster(known), _raster(known_mask)
        temp = temperature.to(torch.float64)

        def cond(t, image, *caches):
            return t < height * width * colours

        def body(t, image, *caches):
            i, j, c = t // (width * colours), (t // colours) % width, t % colours
            at = t.reshape(1)
            value, caches = step.sample_subpixel(
                i,
                j,
                c,
                label,
                caches,
                u.index_select(0, at).reshape(-1),
                temp,
                _draw,
                kv.index_select(0, at).reshape(-1),
                km.index_select(0, at).reshape(-1),
            )
            return (t + 1, torch.index_put(image, (at,), value.unsqueeze(0)), *caches)

        def row_cond(r, image, *caches):
            return r < height

        def row_body(r, image, *caches):
            # the once-per-row work (the gated vertical stack), then a Loop over the row's W * C sub-pixels that
            # carries only the caches a sub-pixel changes (the others are read-only inside it)
            caches = step.start_row(r, label, caches)
            written = step.subpixel_caches()

            def sub_cond(t, image, *carried):
                return t < width * colours

            def sub_body(t, image, *carried):
                state = list(caches)
                for k, x in zip(written, carried, strict=True):
                    state[k] = x
                j, c = t // colours, t % colours
                at = (r * (width * colours) + t).reshape(1)
                value, state = step.sample_subpixel(
                    r,
                    j,
                    c,
                    label,
                    state,
                    u.index_select(0, at).reshape(-1),
                    temp,
                    _draw,
                    kv.index_select(0, at).reshape(-1),
                    km.index_select(0, at).reshape(-1),
                )
                return (t + 1, torch.index_put(image, (at,), value.unsqueeze(0)), *(state[k] for k in written))

            zero = torch.zeros((), dtype=torch.int64)
            _, image, *carried = while_loop(sub_cond, sub_body, (zero, image, *(caches[k] for k in written)))
            for k, x in zip(written, carried, strict=True):
                caches[k] = x
            return (r + 1, image, *caches)

        start = (torch.zeros((), dtype=torch.int64), torch.zeros_like(kv), *step.initial_caches(n))
        image = while_loop(row_cond if step.per_row else cond, row_body if step.per_row else body, start)[1]
        return image.reshape(height, width, colours, n).permute(3, 2, 0, 1)  # from [H * W * C, N]


class UnconditionalSamplerModule(SamplerModule):
    """Unconditional sampler graph: no ``label`` input."""

    def forward(
        self, uniforms: torch.Tensor, temperature: torch.Tensor, known: torch.Tensor, known_mask: torch.Tensor
    ) -> torch.Tensor:
        return super().forward(None, uniforms, temperature, known, known_mask)


def sampler_module(model: PixelCNN, dtype: torch.dtype = torch.float32) -> SamplerModule:
    cls = SamplerModule if model.num_classes > 0 else UnconditionalSamplerModule
    return cls(model, dtype).eval()


def input_names(module: SamplerModule) -> list[str]:
    return (["label"] if module.conditional else []) + ["uniforms", "temperature", "known", "known_mask"]


def example_sampler_inputs(module: SamplerModule, batch: int = 2) -> tuple[torch.Tensor, ...]:
    step = module.step
    shape = (batch, step.channels, step.height, step.width)
    label = (torch.zeros(batch, dtype=torch.int64),) if module.conditional else ()
    return (
        *label,
        torch.rand(shape, generator=torch.Generator().manual_seed(0)),
        torch.tensor(1.0),
        torch.zeros(shape, dtype=torch.uint8),
        torch.zeros(shape, dtype=torch.bool),
    )
