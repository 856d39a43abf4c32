"""Samplers (docs/DESIGN.md §5): the naive reference, the cached incremental sampler in Python, and its C++/CUDA twin.

Contract shared by every method: before any network call draw ONE uniform tensor ``U ~ U[0,1)`` of shape
``[N, C, H, W]`` (float32) from ``generator``; sub-pixel ``p`` takes the value that ``pixelcnn.draw.draw_values``
(the one draw rule, in double precision, shared with csrc/draw.h) gives for its logits and ``U[p]``. So every method
gives the same image for the same generator seed.
"""

from __future__ import annotations

from typing import Optional

import torch

from pixelcnn.draw import draw_values
from pixelcnn.extension import extension_error, load_extension
from pixelcnn.gated import GatedPixelCNN
from pixelcnn.model import PixelCNN
from pixelcnn.ops.cached_sample import cached_sample, gated_cached_sample
from pixelcnn.step import cached_step

METHODS = ("naive", "cached", "cached_ext", "cuda_emulated")


def draw_uniforms(shape: tuple[int, ...], generator: Optional[torch.Generator]) -> torch.Tensor:
    """U[0,1) float32 tensor of ``shape`` drawn on the generator's device (CPU when no generator)."""
    device = generator.device if generator is not None else "cpu"
    return torch.rand(shape, generator=generator, device=device, dtype=torch.float32)


def _check(model: PixelCNN, labels: Optional[torch.Tensor], temperature: float, n: Optional[int]) -> int:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if labels is None:
        if model.num_classes:
            raise ValueError(
                f"labels are required for this class-conditional model: int64 [N] in 0..{model.num_classes - 1}"
            )
        if n is None:
            raise ValueError("pass labels (conditional model) or n (number of images, unconditional model)")
        return n
    if model.num_classes == 0:
        raise ValueError("this model is unconditional (num_classes=0); pass labels=None and n")
    if labels.dim() != 1 or labels.dtype != torch.int64:
        raise ValueError(f"labels must be an int64 [N] tensor, got {labels.dtype} {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= model.num_classes):
        raise ValueError(f"labels must lie in 0..{model.num_classes - 1}")
    return labels.shape[0]


def check_known(known: Optional[torch.Tensor], known_mask: Optional[torch.Tensor], shape: tuple[int, ...]) -> None:
    """Completion inputs: both or neither; uint8 ``known`` and bool ``known_mask`` of the image shape."""
    if (known is None) != (known_mask is None):
        raise ValueError("pass both known (uint8 [N, C, H, W]) and known_mask (bool [N, C, H, W]), or neither")
    if known is None:
        return
    shape_s = ", ".join(map(str, shape))
    if known.dtype != torch.uint8 or tuple(known.shape) != tuple(shape):
        raise ValueError(f"known must be uint8 [{shape_s}] (the image shape), got {known.dtype} {tuple(known.shape)}")
    if known_mask.dtype != torch.bool or tuple(known_mask.shape) != tuple(shape):
        raise ValueError(
            f"known_mask must be bool [{shape_s}] (the image shape), got {known_mask.dtype} {tuple(known_mask.shape)}"
        )


@torch.no_grad()
def sample(
    model: PixelCNN,
    labels: Optional[torch.Tensor] = None,
    temperature: float = 1.0,
    generator: Optional[torch.Generator] = None,
    method: str = "auto",
    n: Optional[int] = None,
    uniforms: Optional[torch.Tensor] = None,
    progress: bool = False,
    known: Optional[torch.Tensor] = None,
    known_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Draw images: uint8 ``[N, C, H, W]`` on the model's device.

    ``method``: ``naive`` (a full forward per sub-pixel), ``cached`` (incremental, Python), ``cached_ext``
    (incremental, C++/CUDA extension), ``cuda_emulated`` (the CUDA kernels' source run on the CPU under
    emulation: slow, for checks) or ``auto`` (the fastest available). ``uniforms`` replaces the draw from
    ``generator`` (for cross-runtime checks); it must be float32 ``[N, C, H, W]`` in [0, 1).
    Completion: ``known`` (uint8) and ``known_mask`` (bool), both ``[N, C, H, W]``: where the mask is set the
    sub-pixel is copied from ``known`` instead of drawn, and later sub-pixels condition on it.
    """
    if labels is None and n is None and known is not None:
        n = known.shape[0]
    n = _check(model, labels, temperature, n)
    c, (h, w) = model.channels, model.image_size
    check_known(known, known_mask, (n, c, h, w))
    if uniforms is None:
        uniforms = draw_uniforms((n, c, h, w), generator)
    elif tuple(uniforms.shape) != (n, c, h, w) or uniforms.dtype != torch.float32:
        raise ValueError(f"uniforms must be float32 [{n}, {c}, {h}, {w}], got {uniforms.dtype} {tuple(uniforms.shape)}")
    device = next(model.parameters()).device
    uniforms = uniforms.to(device)
    labels = labels.to(device) if labels is not None else None
    if known is not None:
        known, known_mask = known.to(device), known_mask.to(device)
    method = resolve_method(method)
    was_training = model.training
    model.eval()
    try:
        if method == "naive":
            return _sample_naive(model, labels, uniforms, temperature, known, known_mask, progress)
        if method == "cached":
            return CachedSampler(model, labels, n).run(uniforms, temperature, known, known_mask, progress)
        return _sample_ext(model, labels, uniforms, temperature, known, known_mask, emulated=method == "cuda_emulated")
    finally:
        model.train(was_training)


def resolve_method(method: str) -> str:
    """``auto`` -> ``cached_ext`` when the extension loaded (it runs both architectures), else ``cached``; explicit
    choices are checked."""
    if method == "auto":
        return "cached_ext" if load_extension() is not None else "cached"
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}; expected one of {METHODS} or 'auto'")
    if method in ("cached_ext", "cuda_emulated"):
        if load_extension() is None:
            raise RuntimeError(f"method={method!r} needs the compiled extension pixelcnn._C: {extension_error()}")
    return method


def _positions(c: int, h: int, w: int, progress: bool, desc: str):
    steps = [(i, j, k) for i in range(h) for j in range(w) for k in range(c)]
    if progress:
        from tqdm import tqdm

        return tqdm(steps, desc=desc, leave=False)
    return steps


def _sample_naive(model, labels, u, temperature, known, known_mask, progress):
    n, c, h, w = u.shape
    image = torch.zeros(n, c, h, w, dtype=torch.uint8, device=u.device)
    for i, j, k in _positions(c, h, w, progress, "sample naive"):
        logits = model.logits(model.normalize(image), labels)[:, :, k, i, j]
        value = draw_values(logits, u[:, k, i, j], temperature).to(torch.uint8)
        if known is not None:
            value = torch.where(known_mask[:, k, i, j], known[:, k, i, j], value)
        image[:, k, i, j] = value
    return image


class CachedSampler:
    """Incremental sampler: runs the one cached step of the model's architecture (``pixelcnn.step.cached_step``:
    its ``start_row`` at the start of each row, its ``subpixel`` for every sub-pixel), each spatial layer keeping a
    ring buffer of its input rows, and writes each drawn (or known) value into
    the first layer's buffer, where later sub-pixels read it."""

    def __init__(self, model: PixelCNN, labels: Optional[torch.Tensor], n: int):
        self.step = cached_step(model)
        self.labels, self.n = labels, n
        self.caches = self.step.initial_caches(n)

    def logits(self, i: int, j: int, c: int) -> torch.Tensor:
        """Logits ``[N, 256]`` of sub-pixel (i, j, c); every sub-pixel before it must have been ``reveal``-ed."""
        logits, self.caches = self.step(i, j, c, self.labels, self.caches)
        return logits

    def reveal(self, value: torch.Tensor, i: int, j: int, c: int) -> None:
        """Record the value (uint8-valued ``[N]``) of sub-pixel (i, j, c) for the sub-pixels after it."""
        self.caches[0] = self.step.write(self.caches[0], value, i, j, c)

    def run(
        self,
        u: torch.Tensor,
        temperature: float,
        known: Optional[torch.Tensor] = None,
        known_mask: Optional[torch.Tensor] = None,
        progress: bool = False,
    ) -> torch.Tensor:
        n, c, h, w = u.shape
        image = torch.zeros(n, c, h, w, dtype=torch.uint8, device=u.device)
        for i, j, k in _positions(c, h, w, progress, "sample cached"):
            if j == 0 and k == 0:  # row i-1 is complete: the once-per-row work (gated: the vertical stack)
                self.caches = self.step.start_row(i, self.labels, self.caches)
            kv, km = (known[:, k, i, j], known_mask[:, k, i, j]) if known is not None else (None, None)
            image[:, k, i, j], self.caches = self.step.sample_subpixel(
                i, j, k, self.labels, self.caches, u[:, k, i, j], temperature, draw_values, kv, km
            )
        return image


def extension_arguments(model: PixelCNN, labels: Optional[torch.Tensor]):
    """Masked weights, biases and class vectors in the order the extension's op for ``model``'s architecture takes
    them (csrc/ops.cpp). ``pixelcnn::cached_sample``: first conv, then (conv_in, conv_mid, conv_out) per block, then
    head_hidden, head_out; class vectors of the first conv and each block. ``pixelcnn::gated_cached_sample``:
    (v_conv, h_conv, link, proj) per layer, then head_hidden, head_out; class vectors (embed_v, embed_h) per layer."""
    if isinstance(model, GatedPixelCNN):
        convs = [m for layer in model.layers for m in (layer.v_conv, layer.h_conv, layer.link, layer.proj)]
        embeds = [e for layer in model.layers for e in (layer.embed_v, layer.embed_h)]
    else:
        convs = [model.conv_first] + [m for b in model.blocks for m in (b.conv_in, b.conv_mid, b.conv_out)]
        embeds = [model.embed] + [b.embed for b in model.blocks]
    convs += [model.head_hidden, model.head_out]
    weights = [(m.weight * m.mask if getattr(m, "mask", None) is not None else m.weight).contiguous() for m in convs]
    biases = [m.bias.contiguous() for m in convs]
    conds = []
    if model.num_classes:
        conds = [e(labels).to(weights[0].dtype).contiguous() for e in embeds]
    return weights, biases, conds


def _sample_ext(model, labels, u, temperature, known=None, known_mask=None, emulated=False):
    weights, biases, conds = extension_arguments(model, labels)
    gated = isinstance(model, GatedPixelCNN)
    if not emulated:
        op = gated_cached_sample if gated else cached_sample
        return op(u.contiguous(), weights, biases, conds, model.channels, temperature, known, known_mask)
    if u.device.type != "cpu":
        raise ValueError(
            f"method='cuda_emulated' runs the CUDA kernels on the CPU: move the model to the CPU (it is on {u.device})"
        )
    ops = torch.ops.pixelcnn
    op = ops.gated_cached_sample_emulated if gated else ops.cached_sample_emulated
    return op(u.contiguous(), weights, biases, conds, model.channels, float(temperature), known, known_mask)
