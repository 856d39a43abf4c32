"""Parity of an exported model against eager PyTorch: max |logit diff| and bits/dim difference."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch

from pixelcnn.likelihood import bits_per_dim

LOGIT_TOL = 1e-4
BPD_TOL = 1e-5


def parity_inputs(model, shared_mnist: str | None = None, batch: int = 7):
    """Real MNIST test images for 28x28 grey models when available, random colour/grey images otherwise."""
    from export.wrapper import example_inputs

    c, (h, w) = model.channels, model.image_size
    if shared_mnist and c == 1 and (h, w) == (28, 28):
        import gzip
        import os

        with gzip.open(os.path.join(shared_mnist, "MNIST", "raw", "t10k-images-idx3-ubyte.gz")) as f:
            data = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
        image = torch.from_numpy(data[:batch].copy())
        label = torch.arange(batch) % max(1, model.num_classes)
        return image, label
    return example_inputs(model, batch, seed=1)


def compare(run: Callable, model, image: torch.Tensor, label: torch.Tensor) -> dict:
    """``run(image, label) -> logits`` of the exported artefact vs eager ``model``; returns the figures."""
    from export.wrapper import ExportModule

    with torch.no_grad():
        want = ExportModule(model)(image, label)
    got = torch.as_tensor(np.asarray(run(image, label)))
    if got.shape != want.shape:
        raise AssertionError(f"exported model returned {tuple(got.shape)}, eager {tuple(want.shape)}")
    diff = float((got - want).abs().max())
    bpd_diff = abs(float(bits_per_dim(got, image)) - float(bits_per_dim(want, image)))
    return {
        "max_abs_logit_diff": diff,
        "bpd_diff": bpd_diff,
        "batch": int(image.shape[0]),
        "ok": diff <= LOGIT_TOL and bpd_diff <= BPD_TOL,
    }


def compare_step(sampler, model, n: int = 2, seed: int = 0, temperature: float = 1.0) -> dict:
    """An ONNX Runtime step sampler (``export.step.OrtStepSampler``) vs eager PyTorch on the same uniforms:
    its image vs ``sample(method="cached")``'s, and its logits vs the eager step module's at every step."""
    from export.step import StepModule, input_names
    from pixelcnn.sampling import draw_uniforms, sample

    c, (h, w) = model.channels, model.image_size
    uniforms = draw_uniforms((n, c, h, w), torch.Generator().manual_seed(seed))
    labels = torch.arange(n) % model.num_classes if model.num_classes else None
    want = sample(model, labels, temperature, uniforms=uniforms, method="cached", n=n)
    step = StepModule(model).eval()
    worst = [0.0]

    def check(feeds, logits):
        with torch.no_grad():
            eager = step(*(torch.from_numpy(feeds[name]) for name in input_names(step)))[0]
        worst[0] = max(worst[0], float((torch.from_numpy(logits) - eager).abs().max()))

    got = sampler.sample(uniforms.numpy(), labels.numpy() if labels is not None else None, temperature, check)
    mismatched = int((torch.from_numpy(got) != want).sum())
    return {
        "max_abs_logit_diff": worst[0],
        "mismatched_subpixels": mismatched,
        "batch": n,
        "ok": worst[0] <= LOGIT_TOL and mismatched == 0,
    }


BOUNDARY_TOL = 1e-5  # |target - cdf| / cdf[255] below which two precisions may draw either neighbouring value


def boundary_distance(logits, u, temperature, a, b):
    """|target - cdf[min(a, b)]| / cdf[255] for rows of ``logits`` [M, 256]: how close the draw with uniform ``u`` was
    to the boundary between values ``a`` and ``b``."""
    s = logits.double() / temperature
    cdf = torch.exp(s - s.max(dim=-1, keepdim=True).values).cumsum(-1)
    v = torch.minimum(a, b).long()
    target = u.double() * cdf[:, -1]
    return (target - cdf.gather(1, v[:, None])[:, 0]).abs() / cdf[:, -1]


def draws_off_boundary(model, images, labels, uniforms, temperature, known_mask=None) -> int:
    """How many drawn sub-pixels of ``images`` are neither the draw rule's value under ``model``'s logits, given
    ``images`` themselves as the context (teacher forcing), nor within ``BOUNDARY_TOL`` of a CDF boundary. 0 means
    every draw is one the contract allows, even where one early boundary draw made the rest of an image differ from
    another back-end's."""
    from pixelcnn.draw import draw_values

    with torch.no_grad():
        logits = model(images, labels)  # [N, 256, C, H, W]
    flat = logits.permute(0, 2, 3, 4, 1).reshape(-1, logits.shape[1])
    u, got = uniforms.reshape(-1), images.reshape(-1)
    python_draw = draw_values(flat, u, temperature).to(torch.uint8)
    differ = python_draw != got
    if known_mask is not None:
        differ &= ~known_mask.reshape(-1)
    if not differ.any():
        return 0
    d = boundary_distance(flat[differ], u[differ], temperature, python_draw[differ], got[differ])
    return int((d >= BOUNDARY_TOL).sum())


def compare_sampler(
    sampler, model, precision: str = "float32", n: int = 3, seed: int = 0, temperature: float = 0.75
) -> dict:
    """An ONNX Runtime sampler model (``export.ort_sampler.OrtSampler``) vs ``sample(method="cached")`` on the
    same uniforms, for plain sampling and for completion of the top half of Python's images. ``ok``: identical
    images in float64; in float32 every drawn sub-pixel is the draw rule's value given the image itself, or sits at a
    CDF boundary (``draws_off_boundary``; one boundary draw changes the rest of that image, so whole-image agreement
    is not the float32 criterion), and every known sub-pixel is kept."""
    from pixelcnn.sampling import draw_uniforms, sample

    c, (h, w) = model.channels, model.image_size
    dtype = {"float32": torch.float32, "float64": torch.float64}[precision]
    reference = copy.deepcopy(model).to(dtype).eval()
    temperature = float(np.float32(temperature))  # the graph's temperature input is float32
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % model.num_classes if model.num_classes else None
    np_labels = labels.numpy() if labels is not None else None
    uniforms = draw_uniforms((n, c, h, w), g)
    want = sample(reference, labels, temperature, uniforms=uniforms, method="cached", n=n)
    got = torch.from_numpy(sampler.sample(uniforms.numpy(), np_labels, temperature))
    known_mask = torch.zeros(n, c, h, w, dtype=torch.bool)
    known_mask[:, :, : h // 2] = True
    u2 = draw_uniforms((n, c, h, w), g)
    want_c = sample(
        reference, labels, temperature, uniforms=u2, method="cached", n=n, known=want, known_mask=known_mask
    )
    got_c = torch.from_numpy(sampler.sample(u2.numpy(), np_labels, temperature, want.numpy(), known_mask.numpy()))
    mismatched = int((got != want).sum()) + int((got_c != want_c).sum())
    kept = bool(torch.equal(got_c[known_mask], want[known_mask]))
    off = 0
    if precision == "float32" and mismatched:
        off = draws_off_boundary(reference, got, labels, uniforms, temperature) + draws_off_boundary(
            reference, got_c, labels, u2, temperature, known_mask
        )
    ok = kept and (mismatched == 0 if precision == "float64" else off == 0)
    return {
        "mismatched_subpixels": mismatched,
        "draws_off_boundary": off,
        "subpixels": 2 * want.numel(),
        "known_kept": kept,
        "batch": n,
        "precision": precision,
        "ok": ok,
    }
