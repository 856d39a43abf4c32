"""Samplers against the full forward (docs/DESIGN.md §5): teacher-forced cached logits, bit-identical images across
naive / cached / cached_ext, and the compiled extension's contents."""

import pytest
import torch

from pixelcnn.draw import draw_values
from pixelcnn.extension import extension_error, load_extension
from pixelcnn.sampling import CachedSampler, sample
from tests.helpers import random_model

LOGIT_TOL = 1e-4  # abs, float32 cached step vs full forward

needs_ext = pytest.mark.skipif(load_extension() is None, reason=f"extension not built: {extension_error()}")


@torch.no_grad()
def teacher_forced_max_error(model, images, labels):
    """Feed ``images`` sub-pixel by sub-pixel through the cached step path; max |logit - full forward logit|."""
    n, c, h, w = images.shape
    full = model(images, labels)
    cs = CachedSampler(model, labels, n)
    worst = 0.0
    for i in range(h):
        for j in range(w):
            for k in range(c):
                logits = cs.logits(i, j, k)
                worst = max(worst, float((logits - full[:, :, k, i, j]).abs().max()))
                cs.reveal(images[:, k, i, j], i, j, k)
    return worst


@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
def test_cached_step_matches_full_forward_on_real_mnist(mnist_test_images, arch):
    images, labels = mnist_test_images
    model = random_model(
        channels=1,
        num_classes=10,
        hidden=16,
        blocks=2,
        kernel_size=7,
        size=(28, 28),
        dtype=torch.float32,
        std=0.08,
        arch=arch,
    )
    assert teacher_forced_max_error(model, images[:4], labels[:4]) <= LOGIT_TOL


@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
def test_cached_step_matches_full_forward_on_colour_images(arch):
    torch.manual_seed(1)
    images = torch.randint(0, 256, (3, 3, 7, 6), dtype=torch.uint8)
    model = random_model(
        channels=3,
        num_classes=4,
        hidden=12,
        blocks=2,
        kernel_size=5,
        size=(7, 6),
        dtype=torch.float32,
        std=0.1,
        arch=arch,
    )
    assert teacher_forced_max_error(model, images, torch.tensor([0, 3, 1])) <= LOGIT_TOL


METHODS = ["naive", "cached"] + (["cached_ext"] if load_extension() is not None else [])


@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("conditional", [True, False])
def test_all_methods_draw_bit_identical_images_in_float64(channels, conditional, arch):
    model = random_model(
        channels=channels,
        num_classes=5 if conditional else 0,
        hidden=10,
        blocks=2,
        kernel_size=5,
        size=(6, 5),
        std=0.25,
        arch=arch,
    )
    labels = torch.tensor([0, 4, 2, 2]) if conditional else None
    images = {m: sample(model, labels, 0.7, torch.Generator().manual_seed(11), m, n=4) for m in METHODS}
    assert images["naive"].float().std() > 10  # a real spread of values, not a constant image
    for m in METHODS[1:]:
        assert torch.equal(images[m], images["naive"]), m
    assert load_extension() is not None, f"cached_ext must be tested: {extension_error()}"


@needs_ext
@pytest.mark.parametrize("n,hidden,std", [(8, 32, 0.05), (7, 12, 0.3), (5, 24, 0.3)])
def test_extension_matches_python_cached_in_float32_on_trained_size_model(n, hidden, std):
    """float32 runs the vector GEMM tiles (csrc/gemm.h): 7 and 5 images leave partial row tiles, 2h = 24 and
    h = 12 partial panel groups."""
    model = random_model(
        channels=1, num_classes=10, hidden=hidden, blocks=3, kernel_size=7, size=(12, 12), dtype=torch.float32, std=std
    )
    labels = torch.arange(n) % 10
    a = sample(model, labels, 1.3, torch.Generator().manual_seed(2), "cached")
    b = sample(model, labels, 1.3, torch.Generator().manual_seed(2), "cached_ext")
    assert (a == b).float().mean() > 0.99  # float32: summation order may flip a rare draw at a CDF boundary


def test_inverse_cdf_picks_smallest_value_whose_cdf_exceeds_u():
    logits = torch.log(torch.tensor([[0.25, 0.25, 0.5] + [0.0] * 253]) + 1e-30)
    picks = [int(draw_values(logits, torch.tensor([u]), 1.0)) for u in (0.0, 0.2499, 0.25, 0.6, 0.99999)]
    assert picks == [0, 0, 1, 2, 2]


def test_same_generator_seed_same_image_and_temperature_checked():
    model = random_model(channels=1, num_classes=2, hidden=6, blocks=1, kernel_size=3, size=(4, 4))
    a = sample(model, torch.tensor([0, 1]), 1.0, torch.Generator().manual_seed(0), "cached")
    b = sample(model, torch.tensor([0, 1]), 1.0, torch.Generator().manual_seed(0), "cached")
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sample(model, torch.tensor([0]), 0.0, None, "cached")
    with pytest.raises(ValueError, match="labels must lie"):
        sample(model, torch.tensor([2]), 1.0, None, "cached")


def test_cache_memory_is_rows_times_width_not_height_times_width():
    model = random_model(channels=1, num_classes=0, hidden=8, blocks=3, kernel_size=7, size=(40, 30))
    cs = CachedSampler(model, None, 2)
    for layer, cache in zip(cs.step.spatial(), cs.caches, strict=True):
        rows, width, cin, n = cache.shape
        assert rows == layer.k // 2 + 1 and width == 30 + 2 * (layer.k // 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_cuda_extension_matches_cpu_cached_sampler():
    model = random_model(
        channels=3, num_classes=4, hidden=16, blocks=2, kernel_size=5, size=(8, 8), dtype=torch.float64, std=0.2
    )
    labels = torch.tensor([0, 1, 2, 3])
    want = sample(model, labels, 0.9, torch.Generator().manual_seed(4), "cached")
    u = torch.rand(want.shape, generator=torch.Generator().manual_seed(4))
    got = sample(model.cuda(), labels.cuda(), 0.9, None, "cached_ext", uniforms=u)
    assert (got.cpu() == want).float().mean() > 0.99


def test_gated_cache_holds_vertical_rings_horizontal_rows_and_the_link_state():
    model = random_model(channels=3, num_classes=0, hidden=8, blocks=2, kernel_size=7, size=(9, 10), arch="gated")
    cs = CachedSampler(model, None, 2)
    shapes = [tuple(x.shape) for x in cs.caches]
    # image ring (layer 0, k0 = 7: rows i-3..i), per later layer (k = 3) its vertical ring and horizontal row, links
    assert shapes == [(4, 16, 3, 2)] + [(2, 12, 8, 2), (1, 12, 8, 2)] * 2 + [(3, 10, 16, 2)]
