"""The extension's ops as torch sees them (schema, fake implementations, dispatcher registrations) and the C++
sampler's CPU paths against each other: the scalar fallback against each vector ISA, and thread splits
(docs/DESIGN.md §6)."""

import os

import pytest
import torch

from pixelcnn.extension import cpu_isa, cpu_isas, cuda_kernels_built, extension_error, load_extension
from pixelcnn.ops.cached_sample import cached_sample, draw
from pixelcnn.sampling import extension_arguments
from tests.helpers import random_model

pytestmark = pytest.mark.skipif(load_extension() is None, reason=f"extension not built: {extension_error()}")

VECTOR_ISAS = [isa for isa in ("avx2", "avx512") if load_extension() is not None and isa in cpu_isas()]


def sampler_inputs(channels=1, num_classes=3, n=3, dtype=torch.float64, hidden=8, size=(5, 4), seed=0):
    model = random_model(
        channels=channels,
        num_classes=num_classes,
        hidden=hidden,
        blocks=2,
        kernel_size=5,
        size=size,
        dtype=dtype,
        std=0.25,
        seed=seed,
    )
    labels = torch.arange(n) % num_classes if num_classes else None
    with torch.no_grad():
        weights, biases, conds = extension_arguments(model, labels)
    u = torch.rand(n, channels, *size, generator=torch.Generator().manual_seed(seed))
    return u, weights, biases, conds


def run_with_isa(isa, monkeypatch, *args, **kwargs):
    monkeypatch.setenv("PIXELCNN_CPU_ISA", isa)
    assert cpu_isa() == isa
    return cached_sample(*args, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels,num_classes", [(1, 3), (3, 0)])
def test_opcheck_cached_sample(dtype, channels, num_classes):
    u, weights, biases, conds = sampler_inputs(channels, num_classes, n=2, dtype=dtype, size=(3, 3))
    torch.library.opcheck(torch.ops.pixelcnn.cached_sample.default, (u, weights, biases, conds, channels, 0.9))
    known = torch.randint(0, 256, u.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mask = torch.rand(u.shape, generator=torch.Generator().manual_seed(2)) < 0.5
    torch.library.opcheck(
        torch.ops.pixelcnn.cached_sample.default, (u, weights, biases, conds, channels, 0.9, known, mask)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_draw(dtype):
    g = torch.Generator().manual_seed(0)
    torch.library.opcheck(
        torch.ops.pixelcnn.draw.default,
        (torch.randn(7, 256, generator=g, dtype=torch.float64).to(dtype), torch.rand(7), 0.8),
    )


def test_fake_implementations_give_shape_and_dtype_without_running():
    from torch._subclasses.fake_tensor import FakeTensorMode

    u, weights, biases, conds = sampler_inputs(n=4)
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(t) for t in (u, *weights, *biases, *conds)]
        nw = len(weights)
        image = cached_sample(fake[0], fake[1 : 1 + nw], fake[1 + nw : 1 + 2 * nw], fake[1 + 2 * nw :], 1, 1.0)
        values = draw(torch.empty(6, 256, dtype=torch.float64), torch.empty(6), 1.0)
    assert (image.shape, image.dtype) == (u.shape, torch.uint8)
    assert (values.shape, values.dtype) == (torch.Size([6]), torch.int64)


def test_dispatcher_says_which_kernels_are_registered():
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    assert has("pixelcnn::cached_sample", "CPU") and has("pixelcnn::draw", "CPU")
    assert not has("pixelcnn::cached_sample", "XLA")  # the question can be answered "no"
    assert cuda_kernels_built() == has("pixelcnn::cached_sample", "CUDA")


def test_extension_was_built_with_cuda_kernels():
    """CI compiles the .cu sources (nvcc is on every machine): the dispatcher must hold the CUDA kernel."""
    if os.environ.get("PIXELCNN_NO_CUDA") == "1":
        pytest.skip("PIXELCNN_NO_CUDA=1: CUDA build step skipped on purpose")
    assert cuda_kernels_built()


def test_cpu_isa_variable_forces_a_path_or_names_the_problem(monkeypatch):
    assert cpu_isas()[0] == "scalar" and cpu_isa() == cpu_isas()[-1]  # unset: the widest
    u, weights, biases, conds = sampler_inputs(n=1, size=(2, 2))
    monkeypatch.setenv("PIXELCNN_CPU_ISA", "neon")
    with pytest.raises(ValueError, match="PIXELCNN_CPU_ISA=neon names no instruction set"):
        cpu_isa()
    with pytest.raises(RuntimeError, match="PIXELCNN_CPU_ISA=neon names no instruction set"):
        cached_sample(u, weights, biases, conds, 1, 1.0)
    for isa in ("avx2", "avx512"):
        if isa not in cpu_isas():  # e.g. avx512 on an AVX2-only CPU, every vector ISA on a non-x86 build
            monkeypatch.setenv("PIXELCNN_CPU_ISA", isa)
            with pytest.raises(RuntimeError, match=f"PIXELCNN_CPU_ISA={isa}: this CPU .* cannot run it"):
                cached_sample(u, weights, biases, conds, 1, 1.0)


@pytest.mark.skipif(not VECTOR_ISAS, reason="no vector ISA on this CPU/build: only the scalar path exists")
@pytest.mark.parametrize("isa", VECTOR_ISAS)
@pytest.mark.parametrize("channels,num_classes", [(1, 4), (3, 0)])
def test_scalar_path_draws_the_same_images_as_vector_path_in_float64(isa, channels, num_classes, monkeypatch):
    """The paths differ only in rounding (the vector kernels fuse each multiply-add), so float64 logits differ in
    the last bits and the images are identical; 9 images and h = 12 leave partial tiles and panels."""
    u, weights, biases, conds = sampler_inputs(channels, num_classes, n=9, hidden=12, size=(6, 5))
    scalar = run_with_isa("scalar", monkeypatch, u, weights, biases, conds, channels, 0.8)
    vector = run_with_isa(isa, monkeypatch, u, weights, biases, conds, channels, 0.8)
    assert scalar.float().std() > 10  # a real spread of values
    assert torch.equal(scalar, vector)


@pytest.mark.skipif(not VECTOR_ISAS, reason="no vector ISA on this CPU/build: only the scalar path exists")
@pytest.mark.parametrize("isa", VECTOR_ISAS)
def test_scalar_path_against_vector_path_in_float32(isa, monkeypatch):
    """float32 logits of the two paths differ by a few ulp, so a draw whose target sits that close to a CDF value
    may flip (and the rest of that image follow another path): what holds is agreement on >= 99% of sub-pixels."""
    u, weights, biases, conds = sampler_inputs(1, 10, n=8, dtype=torch.float32, hidden=24, size=(10, 10), seed=3)
    scalar = run_with_isa("scalar", monkeypatch, u, weights, biases, conds, 1, 1.0)
    vector = run_with_isa(isa, monkeypatch, u, weights, biases, conds, 1, 1.0)
    assert (scalar == vector).float().mean() >= 0.99


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n,hidden", [(1, 160), (3, 16)])
def test_thread_split_does_not_change_a_bit(dtype, n, hidden):
    """1 image on 2 threads: the threads share each layer's output panels (h = 160 makes a step worth a team);
    3 images: each thread owns images. Every sum keeps its order either way, so even float32 images equal the
    single-thread ones."""
    u, weights, biases, conds = sampler_inputs(3, 5, n=n, dtype=dtype, hidden=hidden, size=(6, 6), seed=5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cached_sample(u, weights, biases, conds, 3, 1.1)
        torch.set_num_threads(2)
        two = cached_sample(u, weights, biases, conds, 3, 1.1)
    finally:
        torch.set_num_threads(threads)
    assert one.float().std() > 10
    assert torch.equal(one, two)


def test_layers_that_do_not_chain_are_named():
    u, weights, biases, conds = sampler_inputs(n=2)
    bad = list(weights)
    bad[2] = bad[2][:, :-1]  # block 0's middle conv reads one channel fewer than its 1x1 in gives
    with pytest.raises(RuntimeError, match="weight 2 has 7 input channels, the layer it reads gives 8"):
        cached_sample(u, bad, biases, conds, 1, 1.0)
    with pytest.raises(RuntimeError, match="class vector 1 must be \\[2, 8\\]"):
        cached_sample(u, weights, biases, [conds[0], conds[1][:, :-1], conds[2]], 1, 1.0)
