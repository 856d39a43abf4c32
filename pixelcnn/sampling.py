"""Samplers (DESIGN.md §5): the naive reference, the cached incremental sampler in Python, and its C++/CUDA twin.

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
from pixelcnn.model import PixelCNN
from pixelcnn.ops.cached_sample import cached_sample
from pixelcnn.pixels import LEVELS, to_unit

METHODS = ("naive", "cached", "cached_ext")


def draw_uniforms(shape: tuple[int, ...], generator: Optional[torch.Generator]) -> torch.Tensor:
    """U[0,1) float32 tensor of ``shape`` drawn on the generator's device (CPU when no generator)."""
    device = generator.device if generator is not None else "cpu"
    return torch.rand(shape, generator=generator, device=device, dtype=torch.float32)


def _check(model: PixelCNN, labels: Optional[torch.Tensor], temperature: float, n: Optional[int]) -> int:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if labels is None:
        if model.num_classes:
            raise ValueError(f"labels are required for this class-conditional model: int64 [N] in "
                             f"0..{model.num_classes - 1}")
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


@torch.no_grad()
def sample(model: PixelCNN, labels: Optional[torch.Tensor] = None, temperature: float = 1.0,
           generator: Optional[torch.Generator] = None, method: str = "auto", n: Optional[int] = None,
           uniforms: Optional[torch.Tensor] = None, progress: bool = False) -> torch.Tensor:
    """Draw images: uint8 ``[N, C, H, W]`` on the model's device.

    ``method``: ``naive`` (a full forward per sub-pixel), ``cached`` (incremental, Python), ``cached_ext``
    (incremental, C++/CUDA extension) or ``auto`` (the fastest available). ``uniforms`` replaces the draw from
    ``generator`` (for cross-runtime checks); it must be float32 ``[N, C, H, W]`` in [0, 1).
    """
    n = _check(model, labels, temperature, n)
    c, (h, w) = model.channels, model.image_size
    if uniforms is None:
        uniforms = draw_uniforms((n, c, h, w), generator)
    elif tuple(uniforms.shape) != (n, c, h, w) or uniforms.dtype != torch.float32:
        raise ValueError(f"uniforms must be float32 [{n}, {c}, {h}, {w}], got {uniforms.dtype} "
                         f"{tuple(uniforms.shape)}")
    device = next(model.parameters()).device
    uniforms = uniforms.to(device)
    labels = labels.to(device) if labels is not None else None
    method = resolve_method(method)
    was_training = model.training
    model.eval()
    try:
        if method == "naive":
            return _sample_naive(model, labels, uniforms, temperature, progress)
        if method == "cached":
            return CachedSampler(model, labels, n).run(uniforms, temperature, progress)
        return _sample_ext(model, labels, uniforms, temperature)
    finally:
        model.train(was_training)


def resolve_method(method: str) -> str:
    """``auto`` -> ``cached_ext`` when the extension loaded, else ``cached``; explicit choices are checked."""
    if method == "auto":
        return "cached_ext" if load_extension() is not None else "cached"
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}; expected one of {METHODS} or 'auto'")
    if method == "cached_ext" and load_extension() is None:
        raise RuntimeError(f"method='cached_ext' needs the compiled extension pixelcnn._C: {extension_error()}")
    return method


def _positions(c: int, h: int, w: int, progress: bool, desc: str):
    steps = [(i, j, k) for i in range(h) for j in range(w) for k in range(c)]
    if progress:
        from tqdm import tqdm
        return tqdm(steps, desc=desc, leave=False)
    return steps


def _sample_naive(model, labels, u, temperature, progress):
    n, c, h, w = u.shape
    image = torch.zeros(n, c, h, w, dtype=torch.uint8, device=u.device)
    for i, j, k in _positions(c, h, w, progress, "sample naive"):
        logits = model.logits(model.normalize(image), labels)[:, :, k, i, j]
        image[:, k, i, j] = draw_values(logits, u[:, k, i, j], temperature).to(torch.uint8)
    return image


def cache_geometry(conv) -> tuple[int, int, int]:
    """(kernel size k, padding p = k//2, cached rows p+1) of a spatial masked conv's ring buffer."""
    k = conv.kernel_size
    return k, k // 2, k // 2 + 1


def dense_weight(conv) -> torch.Tensor:
    """A 1x1 masked conv's weight as a ``[C_in, C_out]`` matrix for one position."""
    return (conv.weight * conv.mask)[:, :, 0, 0].t().contiguous()


def cached_conv_weight(conv) -> torch.Tensor:
    """Masked weight as a ``[C_in * rows * k, C_out]`` matrix for a patch of the ring buffer (rows i-p..i,
    cols j-p..j+p, flattened C_in-major); rows below the centre are all masked out, so they are dropped."""
    _, _, rows = cache_geometry(conv)
    wm = (conv.weight * conv.mask)[:, :, :rows, :]
    return wm.reshape(conv.out_channels, -1).t().contiguous()


class CachedSampler:
    """Incremental sampler: each spatial layer keeps a ring buffer of its last k//2+1 input rows.

    Sub-pixel (i, j, c) computes every layer only at position (i, j). Hidden activations at (i, j) depend on
    image channels < C-1 only (the first layer is mask A), so they are final by the last colour step; only the
    image itself changes after that, and it is its own cache.
    """

    def __init__(self, model: PixelCNN, labels: Optional[torch.Tensor], n: int):
        self.model, self.n = model, n
        p = next(model.parameters())
        self.dtype, self.device = p.dtype, p.device
        self.w = model.image_size[1]
        first = model.conv_first
        self.first = self._spatial(first)
        self.cond_first = model.embed(labels).to(self.dtype) if model.embed is not None else None
        self.blocks = []
        for b in model.blocks:
            cond = b.embed(labels).to(self.dtype) if b.embed is not None else None
            self.blocks.append((self._dense(b.conv_in), self._spatial(b.conv_mid), cond, self._dense(b.conv_out)))
        self.head_hidden = self._dense(model.head_hidden)
        self.head_out = self._dense(model.head_out)

    def _dense(self, conv):
        return dense_weight(conv), conv.bias

    def _spatial(self, conv):
        k, p, rows = cache_geometry(conv)
        buf = torch.zeros(self.n, conv.in_channels, rows, self.w + 2 * p, dtype=self.dtype, device=self.device)
        return {"w": cached_conv_weight(conv), "b": conv.bias, "k": k, "p": p, "rows": rows, "buf": buf}

    @staticmethod
    def _store(layer, x: torch.Tensor, i: int, j: int) -> None:
        layer["buf"][:, :, i % layer["rows"], j + layer["p"]] = x

    @staticmethod
    def _conv_at(layer, i: int, j: int) -> torch.Tensor:
        rows, k = layer["rows"], layer["k"]
        slots = [(i - rows + 1 + r) % rows for r in range(rows)]
        patch = layer["buf"][:, :, slots, j:j + k]  # [N, Cin, rows, k], rows i-p..i, cols j-p..j+p
        return torch.addmm(layer["b"], patch.reshape(patch.shape[0], -1), layer["w"])

    def reveal(self, image_norm_pixel: torch.Tensor, i: int, j: int) -> None:
        """Record the (partly) drawn pixel ``[N, C]`` (normalised) at (i, j) in the first layer's ring buffer."""
        self._store(self.first, image_norm_pixel, i, j)

    def step(self, image_norm_pixel: torch.Tensor, i: int, j: int, c: int) -> torch.Tensor:
        """Logits ``[N, 256]`` for sub-pixel (i, j, c); ``image_norm_pixel`` is the normalised pixel ``[N, C]``."""
        if j == 0 and c == 0:  # a new row reuses the slot of the row k//2+1 above: clear it
            for layer in [self.first] + [blk[1] for blk in self.blocks]:
                layer["buf"][:, :, i % layer["rows"]] = 0
        self._store(self.first, image_norm_pixel, i, j)
        x = self._conv_at(self.first, i, j)
        if self.cond_first is not None:
            x = x + self.cond_first
        for (w_in, b_in), mid, cond, (w_out, b_out) in self.blocks:
            y = torch.relu(torch.addmm(b_in, torch.relu(x), w_in))
            self._store(mid, y, i, j)
            y = self._conv_at(mid, i, j)
            if cond is not None:
                y = y + cond
            x = torch.addmm(b_out, torch.relu(y), w_out) + x
        w_h, b_h = self.head_hidden
        y = torch.relu(torch.addmm(b_h, torch.relu(x), w_h))
        w_o, b_o = self.head_out
        colors = self.model.channels
        return torch.addmm(b_o[c::colors], y, w_o[:, c::colors])

    def run(self, u: torch.Tensor, temperature: float, progress: bool = False) -> torch.Tensor:
        n, c, h, w = u.shape
        image = torch.zeros(n, c, h, w, dtype=torch.uint8, device=u.device)
        for i, j, k in _positions(c, h, w, progress, "sample cached"):
            pixel = to_unit(image[:, :, i, j], self.dtype)
            logits = self.step(pixel, i, j, k)
            image[:, k, i, j] = draw_values(logits, u[:, k, i, j], temperature).to(torch.uint8)
            if k == c - 1:  # later pixels read this one's final value from the first layer's buffer
                self.reveal(to_unit(image[:, :, i, j], self.dtype), i, j)
        return image


def extension_arguments(model: PixelCNN, labels: Optional[torch.Tensor]):
    """Masked weights, biases and class vectors in the order the ``pixelcnn::cached_sample`` schema takes them:
    first conv, then (conv_in, conv_mid, conv_out) per block, then head_hidden, head_out."""
    convs = [model.conv_first]
    for b in model.blocks:
        convs += [b.conv_in, b.conv_mid, b.conv_out]
    convs += [model.head_hidden, model.head_out]
    weights = [(m.weight * m.mask).contiguous() for m in convs]
    biases = [m.bias.contiguous() for m in convs]
    conds = []
    if model.embed is not None:
        conds = [model.embed(labels)] + [b.embed(labels) for b in model.blocks]
        conds = [x.to(weights[0].dtype).contiguous() for x in conds]
    return weights, biases, conds


def _sample_ext(model, labels, u, temperature):
    weights, biases, conds = extension_arguments(model, labels)
    return cached_sample(u.contiguous(), weights, biases, conds, model.channels, temperature)

