"""The step model: one sub-pixel of the cached sampler (``pixelcnn.step.CachedStep``, docs/DESIGN.md §5) as a
fixed graph, for runtimes that drive the sampling loop themselves (the sampler model, ``export/sampler.py``, runs
the whole loop in one call).

Inputs (N is dynamic):
  ``position`` int64 [3]        (i, j, c) of the sub-pixel to predict, in raster order, colour innermost
  ``last``     uint8 [N]        the sub-pixel drawn at the step before (ignored at position (0, 0, 0))
  ``label``    int64 [N]        class (class-conditional models only)
  ``cache_0``  float32 [rows_0, W + 2 p_0, C, N]   the first layer's ring buffer (the image, normalised)
  ``cache_b``  float32 [rows_b, W + 2 p_b, h, N]   block b's k x k layer input ring buffer, b = 1..B
Outputs:
  ``logits``   float32 [N, 256]  for sub-pixel (i, j, c) (draw with the draw rule, docs/DESIGN.md §5)
  ``cache_k_next``                the updated buffers: feed them back as ``cache_k`` at the next step

Start with all-zero caches (``cache_shapes``; batch last). A step writes ``last`` into cache_0 at the previous
sub-pixel's position (``CachedStep.write``), then runs ``CachedStep`` at (i, j, c).
"""

from __future__ import annotations

import torch
from torch import nn

from pixelcnn.model import PixelCNN
from pixelcnn.step import cached_step


class StepModule(nn.Module):
    """``CachedStep`` behind the step model's inputs: ``position``, ``last``, [``label``], caches."""

    def __init__(self, model: PixelCNN, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.step = cached_step(model).to(dtype)
        self.channels, self.width = model.channels, model.image_size[1]
        self.conditional = model.num_classes > 0

    def cache_shapes(self) -> list[tuple[int, int, int]]:
        return self.step.cache_shapes()

    def initial_caches(self, n: int) -> list[torch.Tensor]:
        return self.step.initial_caches(n)

    def forward(self, position: torch.Tensor, last: torch.Tensor, *rest: torch.Tensor):
        """``rest``: ``label, *caches`` for a class-conditional model, else the caches (``input_names`` order)."""
        label, caches = (rest[0], list(rest[1:])) if self.conditional else (None, list(rest))
        i, j, c = position[0], position[1], position[2]
        # the previous sub-pixel in raster order goes into the first layer's buffer. At (0, 0, 0) there is none:
        # ``last`` then lands on (0, 0, 0) itself, which no weight of colour 0 reads, and the real value
        # overwrites it before colour 1 does
        prev = ((i * self.width + j) * self.channels + c - 1).clamp(min=0)
        pc, pj, pi = prev % self.channels, (prev // self.channels) % self.width, prev // (self.channels * self.width)
        caches[0] = self.step.write(caches[0], last, pi, pj, pc)
        logits, caches = self.step(i, j, c, label, caches)
        return (logits, *caches)


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


class OrtStepSampler:
    """Drives a step model written by ``python -m export onnx --step`` through ONNX Runtime, one ``run`` per
    sub-pixel, drawing with the draw rule (``pixelcnn.draw``): the reference loop for runtimes that take the step
    model instead of the one-call sampler model."""

    def __init__(self, path: str, providers=("CPUExecutionProvider",)):
        import json

        from export.onnx import ExportError, ort_session

        self.session = ort_session(path, providers)
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("pixelcnn.graph") != "step":
            raise ExportError(f"{path} is not a pixelcnn step model (export it with `python -m export onnx --step`)")
        self.channels = int(meta["pixelcnn.channels"])
        self.height, self.width = json.loads(meta["pixelcnn.image_size"])
        self.num_classes = int(meta["pixelcnn.num_classes"])
        self.cache_shapes = [tuple(s) for s in json.loads(meta["pixelcnn.cache_shapes"])]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def sample(self, uniforms, labels=None, temperature: float = 1.0, on_step=None):
        """uniforms float32 ``[N, C, H, W]`` numpy array in [0, 1); labels int64 ``[N]`` -> uint8 images.

        ``on_step(feeds, logits)`` sees every step's inputs and output (parity checks run an eager twin on them).
        """
        import numpy as np

        from pixelcnn.draw import draw_values

        c, h, w = self.channels, self.height, self.width
        if uniforms.ndim != 4 or uniforms.shape[1:] != (c, h, w) or uniforms.dtype != np.float32:
            raise ValueError(f"uniforms must be float32 [N, {c}, {h}, {w}], got {uniforms.dtype} {uniforms.shape}")
        n = uniforms.shape[0]
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if self.num_classes:
            if labels is None or labels.shape != (n,):
                raise ValueError(f"labels must be int64 [{n}] in 0..{self.num_classes - 1} for this model")
            if labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(f"labels must lie in 0..{self.num_classes - 1}")
        feeds = {"last": np.zeros(n, np.uint8)}
        if self.num_classes:  # an unconditional step model has no label input
            feeds["label"] = labels.astype(np.int64)
        feeds.update({f"cache_{k}": np.zeros((*s, n), np.float32) for k, s in enumerate(self.cache_shapes)})
        image = np.zeros((n, c, h, w), np.uint8)
        for i in range(h):
            for j in range(w):
                for k in range(c):
                    feeds["position"] = np.array([i, j, k], np.int64)
                    logits, *caches = self.session.run(self.outputs, feeds)
                    if on_step is not None:
                        on_step(feeds, logits)
                    u = torch.from_numpy(np.ascontiguousarray(uniforms[:, k, i, j]))
                    value = draw_values(torch.from_numpy(logits), u, temperature).numpy().astype(np.uint8)
                    image[:, k, i, j] = value
                    feeds["last"] = value
                    feeds.update({f"cache_{q}": x for q, x in enumerate(caches)})
        return image
