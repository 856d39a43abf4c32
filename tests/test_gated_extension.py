"""The C++ op ``pixelcnn::gated_cached_sample`` on CPU (docs/DESIGN.md §5, gated cached schedule) against the naive
sampler and the Python gated cached step: bit-identical images in float64, the ISA paths and thread splits against
each other, and its argument errors."""

import pytest
import torch

from pixelcnn.extension import cpu_isa, cpu_isas, extension_error, load_extension
from pixelcnn.ops.cached_sample import gated_cached_sample
from pixelcnn.sampling import extension_arguments, sample
from tests.helpers import random_model

pytestmark = pytest.mark.skipif(load_extension() is None, reason=f"extension not built: {extension_error()}")

VECTOR_ISAS = [isa for isa in ("avx2", "avx512") if load_extension() is not None and isa in cpu_isas()]


def gated_model(channels=1, num_classes=3, hidden=10, blocks=2, size=(6, 5), dtype=torch.float64, seed=0, std=0.25):
    # k0 = 5 (layer 0: 2 rows above, 1 x 3 horizontal), k = 3 later (2 x 3 vertical, 1 x 2 horizontal)
    return random_model(
        channels=channels,
        num_classes=num_classes,
        hidden=hidden,
        blocks=blocks,
        kernel_size=5,
        size=size,
        dtype=dtype,
        std=std,
        seed=seed,
        arch="gated",
    )


def op_inputs(model, n, seed=0):
    labels = torch.arange(n) % model.num_classes if model.num_classes else None
    with torch.no_grad():
        weights, biases, conds = extension_arguments(model, labels)
    u = torch.rand(n, model.channels, *model.image_size, generator=torch.Generator().manual_seed(seed))
    return u, weights, biases, conds


def completion(shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g), torch.rand(shape, generator=g) < 0.4


@pytest.mark.parametrize(
    "channels,conditional,complete", [(1, True, False), (3, False, False), (3, True, True), (1, False, True)]
)
def test_gated_cached_ext_draws_the_images_of_the_naive_sampler_bit_for_bit_in_float64(channels, conditional, complete):
    """Sampling and completion, grey and colour, conditional and not (the Python cached step equals naive in
    tests/test_sampling.py)."""
    model = gated_model(channels=channels, num_classes=5 if conditional else 0, size=(5, 5))
    labels = torch.tensor([0, 4, 2]) if conditional else None
    shape = (3, channels, *model.image_size)
    known, known_mask = completion(shape) if complete else (None, None)
    images = {
        m: sample(model, labels, 0.7, torch.Generator().manual_seed(11), m, n=3, known=known, known_mask=known_mask)
        for m in ("naive", "cached_ext")
    }
    assert images["naive"].float().std() > 10  # a real spread of values, not a constant image
    assert torch.equal(images["cached_ext"], images["naive"])
    if complete:
        assert torch.equal(images["cached_ext"][known_mask], known[known_mask])


@pytest.mark.parametrize("n,hidden,std", [(7, 12, 0.3), (5, 24, 0.15)])
def test_gated_cached_ext_matches_python_cached_in_float32(n, hidden, std):
    """float32: another summation order may flip a rare draw at a CDF boundary (the rule of
    tests/test_sampling.py); 7 and 5 images leave partial row tiles, h = 12 and 24 partial panels."""
    model = gated_model(1, 10, hidden=hidden, blocks=3, size=(10, 9), dtype=torch.float32, std=std)
    labels = torch.arange(n) % 10
    a = sample(model, labels, 1.3, torch.Generator().manual_seed(2), "cached")
    b = sample(model, labels, 1.3, torch.Generator().manual_seed(2), "cached_ext")
    assert a.float().std() > 10
    assert (a == b).float().mean() > 0.99


def run_with_isa(isa, monkeypatch, *args):
    monkeypatch.setenv("PIXELCNN_CPU_ISA", isa)
    assert cpu_isa() == isa
    return gated_cached_sample(*args)


@pytest.mark.skipif(not VECTOR_ISAS, reason="no vector ISA on this CPU/build: only the scalar path exists")
@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("channels,num_classes", [(1, 4), (3, 0)])
def test_scalar_path_draws_the_same_gated_images_as_vector_path_in_float64(isa, channels, num_classes, monkeypatch):
    """9 images and h = 12 leave partial tiles and panels; the paths differ only in rounding (fused multiply-adds)."""
    u, weights, biases, conds = op_inputs(gated_model(channels, num_classes, hidden=12, size=(6, 7)), n=9)
    scalar = run_with_isa("scalar", monkeypatch, u, weights, biases, conds, channels, 0.8)
    vector = run_with_isa(isa, monkeypatch, u, weights, biases, conds, channels, 0.8)
    assert scalar.float().std() > 10
    assert torch.equal(scalar, vector)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,hidden,complete", [(1, 48, False), (1, 48, True), (3, 16, False)])
def test_gated_thread_split_does_not_change_a_bit(dtype, n, hidden, complete):
    """1 image on 2 threads: a pipeline (thread 1 stacks the rows a few columns behind thread 0's pixels; h = 48
    and W = 8 make a row worth it); 3 images: each thread owns images. Every sum keeps its order, so even float32
    images equal the single-thread ones."""
    model = gated_model(3, 5, hidden=hidden, size=(5, 8), dtype=dtype, seed=5, std=0.15)
    u, weights, biases, conds = op_inputs(model, n, seed=5)
    known = completion(u.shape) if complete else ()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = gated_cached_sample(u, weights, biases, conds, 3, 1.1, *known)
        torch.set_num_threads(2)
        two = gated_cached_sample(u, weights, biases, conds, 3, 1.1, *known)
    finally:
        torch.set_num_threads(threads)
    assert one.float().std() > 10
    assert torch.equal(one, two)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels,num_classes", [(1, 3), (3, 0)])
def test_opcheck_gated_cached_sample(dtype, channels, num_classes):
    u, weights, biases, conds = op_inputs(gated_model(channels, num_classes, size=(3, 3), dtype=dtype), n=2)
    op = torch.ops.pixelcnn.gated_cached_sample.default
    torch.library.opcheck(op, (u, weights, biases, conds, channels, 0.9))
    torch.library.opcheck(op, (u, weights, biases, conds, channels, 0.9, *completion(u.shape)))


def test_gated_op_names_bad_arguments():
    model = gated_model(1, 3, hidden=8)
    u, weights, biases, conds = op_inputs(model, n=2)
    with pytest.raises(RuntimeError, match=r"expected 4 weights per layer .* got 13 and 13"):
        gated_cached_sample(u, weights[:4] + weights[5:], biases[:4] + biases[5:], conds, 1, 1.0)
    unmasked = list(weights)
    unmasked[4] = model.layers[1].v_conv.weight.detach().clone()  # layer 1's vertical conv without its mask
    with pytest.raises(RuntimeError, match=r"layer 1 v_conv must be masked \(mask vB\)"):
        gated_cached_sample(u, unmasked, biases, conds, 1, 1.0)
    unmasked = list(weights)
    unmasked[1] = model.layers[0].h_conv.weight.detach().clone()
    with pytest.raises(RuntimeError, match=r"layer 0 h_conv must be masked \(mask hA\)"):
        gated_cached_sample(u, unmasked, biases, conds, 1, 1.0)
    with pytest.raises(RuntimeError, match=r"expected 0 or 6 class-vector tensors \(embed_v, embed_h per layer\)"):
        gated_cached_sample(u, weights, biases, conds[:-1], 1, 1.0)
    with pytest.raises(RuntimeError, match=r"class vector 3 must be \[2, 16\]"):
        gated_cached_sample(u, weights, biases, conds[:3] + [conds[3][:, :-1]] + conds[4:], 1, 1.0)
