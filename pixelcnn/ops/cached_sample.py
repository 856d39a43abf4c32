"""Typed Python entry points of the extension's sampler ops (schema in csrc/ops.cpp, docs/DESIGN.md §5), with the
fake (meta) implementations that let ``torch.compile``, ``torch.export`` and ``torch.library.opcheck`` reason about
them without running them. Importing this module needs no extension; calling the ops does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch

from pixelcnn.extension import extension_error, load_extension


def _ops():
    if load_extension() is None:
        raise RuntimeError(f"the pixelcnn C++ extension is needed for this op: {extension_error()}")
    return torch.ops.pixelcnn


def cached_sample(
    uniforms: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    conds: Sequence[torch.Tensor],
    channels: int,
    temperature: float,
    known: Optional[torch.Tensor] = None,
    known_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Whole images by the cached incremental sampler: uint8 ``[N, C, H, W]`` on the uniforms' device.

    ``uniforms``: float32 ``[N, C, H, W]`` in [0, 1), one per sub-pixel. ``weights``/``biases``: the masked weights
    ``[Cout, Cin, k, k]`` and biases of the first conv, each block's (1x1 in, k x k middle, 1x1 out), head_hidden
    and head_out, all float32 or all float64 (``sampling.extension_arguments`` builds them from a model).
    ``conds``: empty, or the class vectors ``[N, 2h]`` of the first layer and ``[N, h]`` of each block.
    ``known``/``known_mask``: uint8 and bool ``[N, C, H, W]``; a known sub-pixel is copied, not drawn.
    """
    return _ops().cached_sample(
        uniforms, list(weights), list(biases), list(conds), int(channels), float(temperature), known, known_mask
    )


def gated_cached_sample(
    uniforms: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    conds: Sequence[torch.Tensor],
    channels: int,
    temperature: float,
    known: Optional[torch.Tensor] = None,
    known_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``cached_sample`` for a ``GatedPixelCNN`` (the vertical stack once per row, the horizontal stack per
    sub-pixel): uint8 ``[N, C, H, W]``, same uniforms, draw rule and completion contract.

    ``weights``/``biases`` per layer (v_conv, h_conv, link, proj; masked weights ``[Cout, Cin, k, k]``), then
    head_hidden and head_out; ``conds``: empty, or (embed_v, embed_h) ``[N, 2h]`` per layer
    (``sampling.extension_arguments`` builds them from a model)."""
    return _ops().gated_cached_sample(
        uniforms, list(weights), list(biases), list(conds), int(channels), float(temperature), known, known_mask
    )


def draw(logits: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """The draw rule (csrc/draw.h) on each row of ``logits`` ``[N, 256]`` with uniforms ``u`` float32 ``[N]``:
    int64 ``[N]`` values in 0..255."""
    return _ops().draw(logits, u, float(temperature))


def _register_fakes() -> None:
    def _cached_sample_fake(uniforms, weights, biases, conds, channels, temperature, known=None, known_mask=None):
        torch._check(
            uniforms.dim() == 4 and uniforms.dtype == torch.float32,
            lambda: (
                f"cached_sample: uniforms must be float32 [N, C, H, W], got {uniforms.dtype} {tuple(uniforms.shape)}"
            ),
        )
        torch._check(
            uniforms.shape[1] == channels,
            lambda: f"cached_sample: uniforms have {uniforms.shape[1]} channels, model has {channels}",
        )
        return uniforms.new_empty(uniforms.shape, dtype=torch.uint8)

    for name in ("cached_sample", "gated_cached_sample"):
        torch.library.register_fake(f"pixelcnn::{name}")(_cached_sample_fake)

    @torch.library.register_fake("pixelcnn::draw")
    def _draw_fake(logits, u, temperature):
        torch._check(
            logits.dim() == 2 and logits.shape[1] == 256,
            lambda: f"draw: logits must be [N, 256], got {tuple(logits.shape)}",
        )
        return logits.new_empty(logits.shape[:1], dtype=torch.int64)


if load_extension() is not None:
    _register_fakes()
