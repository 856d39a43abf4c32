"""The CUDA sampler's own kernel source (csrc/cuda/sampler_kernels.cuh) run on the CPU under the CUDA emulation
(``cuda_emulated``) against the CPU op (``cached_ext``), the Python cached sampler and the naive reference
(docs/DESIGN.md §5, §6); and, on a GPU, the real CUDA build against the CPU op."""

import pytest
import torch

from pixelcnn.extension import extension_error, load_extension
from pixelcnn.sampling import extension_arguments, sample
from tests.helpers import random_model


@pytest.fixture(scope="module", autouse=True)
def extension():
    assert load_extension() is not None, f"the emulated CUDA kernels are part of pixelcnn._C: {extension_error()}"


def _launches() -> int:
    return torch.ops.pixelcnn.emulated_launches()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("conditional", [True, False])
def test_emulated_kernels_equal_naive_and_cached_bit_for_bit_in_float64(channels, conditional):
    # 9 images: more image groups than the emulated device's 8 resident blocks, so blocks loop over groups
    model = random_model(
        channels=channels, num_classes=5 if conditional else 0, hidden=8, blocks=2, kernel_size=5, size=(4, 3), std=0.25
    )
    n = 9
    labels = torch.arange(n) % 5 if conditional else None
    images = {
        m: sample(model, labels, 0.7, torch.Generator().manual_seed(3), m, n=n)
        for m in ("naive", "cached", "cached_ext", "cuda_emulated")
    }
    assert images["naive"].float().std() > 10  # a real spread of values, not a constant image
    for m in ("cached", "cached_ext", "cuda_emulated"):
        assert torch.equal(images[m], images["naive"]), m


@pytest.mark.parametrize("temperature", [0.6, 1.0, 1.7])
@pytest.mark.parametrize("channels,conditional,n", [(1, True, 1), (3, True, 37), (3, False, 9), (1, False, 17)])
def test_emulated_kernels_equal_cpu_op_bit_for_bit_in_float64(temperature, channels, conditional, n):
    """n = 17 and 37 run groups of 4 images per block (the last group partial) and, at 37, more groups than
    resident blocks; 7x5 images; the kernel sizes leave no common tile."""
    model = random_model(
        channels=channels,
        num_classes=4 if conditional else 0,
        hidden=12,
        blocks=2,
        kernel_size=3,
        size=(7, 5),
        std=0.3,
        seed=n,
    )
    labels = torch.arange(n) % 4 if conditional else None
    want = sample(model, labels, temperature, torch.Generator().manual_seed(n), "cached_ext", n=n)
    got = sample(model, labels, temperature, torch.Generator().manual_seed(n), "cuda_emulated", n=n)
    assert want.float().std() > 10
    assert torch.equal(got, want)


@pytest.mark.parametrize("n", [3, 20])
def test_emulated_kernels_in_float32_agree_with_cpu_op_on_at_least_99_percent_of_subpixels(n):
    """float32: the CPU op uses FMA register tiles (4 images x 16 outputs) where the CUDA build may not fuse, so a
    logit can differ in its last bit and flip a draw whose target lies that close to a CDF value (rare)."""
    model = random_model(
        channels=3, num_classes=4, hidden=16, blocks=2, kernel_size=5, size=(6, 6), dtype=torch.float32, std=0.1
    )
    labels = torch.arange(n) % 4
    a = sample(model, labels, 1.0, torch.Generator().manual_seed(5), "cached_ext")
    b = sample(model, labels, 1.0, torch.Generator().manual_seed(5), "cuda_emulated")
    assert a.float().std() > 10
    assert (a == b).float().mean() >= 0.99


def test_one_launch_for_the_whole_loop_or_one_per_step(monkeypatch):
    model = random_model(channels=3, num_classes=0, hidden=8, blocks=1, kernel_size=3, size=(4, 3))
    steps = 3 * 4 * 3
    monkeypatch.delenv("PIXELCNN_CUDA_STEPS_PER_LAUNCH", raising=False)
    before = _launches()
    whole = sample(model, None, 1.0, torch.Generator().manual_seed(0), "cuda_emulated", n=2)
    assert _launches() - before == 1
    for per_launch, launches in [(1, steps), (5, (steps + 4) // 5)]:
        monkeypatch.setenv("PIXELCNN_CUDA_STEPS_PER_LAUNCH", str(per_launch))
        before = _launches()
        got = sample(model, None, 1.0, torch.Generator().manual_seed(0), "cuda_emulated", n=2)
        assert _launches() - before == launches
        assert torch.equal(got, whole)
    monkeypatch.setenv("PIXELCNN_CUDA_STEPS_PER_LAUNCH", "-1")
    with pytest.raises(RuntimeError, match="PIXELCNN_CUDA_STEPS_PER_LAUNCH must be an integer >= 0"):
        sample(model, None, 1.0, None, "cuda_emulated", n=1)


def shared_bytes_per_image(model, itemsize: int) -> int:
    """The kernel's shared rows of one image: residual stream, head hidden, block hidden, the largest spatial
    patch (live taps (p*k + p + 1) * Cin), 256 logits."""

    def taps(conv):
        k = conv.kernel_size
        return (k // 2 * k + k // 2 + 1) * conv.in_channels

    patch = max([taps(model.conv_first)] + [taps(b.conv_mid) for b in model.blocks])
    rows = (
        model.conv_first.out_channels
        + model.head_hidden.out_channels
        + max(b.conv_mid.out_channels for b in model.blocks)
        + patch
        + 256
    )
    return rows * itemsize


def test_shared_memory_above_48_kb_is_allowed_by_the_kernel_attribute():
    """float64 at h = 600: one image's rows take > 48 KB of shared memory, which a GPU (and the emulation) only
    allows after cudaFuncSetAttribute."""
    model = random_model(channels=1, num_classes=0, hidden=600, blocks=1, kernel_size=3, size=(3, 3), std=0.03)
    assert shared_bytes_per_image(model, 8) > 48 * 1024
    want = sample(model, None, 1.0, torch.Generator().manual_seed(1), "cached_ext", n=2)
    got = sample(model, None, 1.0, torch.Generator().manual_seed(1), "cuda_emulated", n=2)
    assert want.float().std() > 10
    assert torch.equal(got, want)


def test_rows_beyond_the_devices_shared_memory_get_a_clear_error():
    """A 141x141 first kernel over 3 colours has (70 * 141 + 71) * 3 live taps: 233 KB of float64, beyond the
    227 KB a block may use on sm_90 (the emulated device)."""
    g = torch.Generator().manual_seed(0)
    h, k0 = 4, 141
    shapes = [
        (2 * h, 3, k0, k0),
        (h, 2 * h, 1, 1),
        (h, h, 3, 3),
        (2 * h, h, 1, 1),
        (2 * h, 2 * h, 1, 1),
        (256 * 3, 2 * h, 1, 1),
    ]
    weights = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    biases = [torch.zeros(s[0], dtype=torch.float64) for s in shapes]
    with pytest.raises(RuntimeError, match=r"need \d+ bytes of shared memory, the device allows 232448 per block"):
        torch.ops.pixelcnn.cached_sample_emulated(torch.rand(1, 3, 2, 2), weights, biases, [], 3, 1.0)


def test_completion_copies_known_subpixels_like_the_cpu_op():
    model = random_model(channels=3, num_classes=3, hidden=8, blocks=2, kernel_size=3, size=(5, 4))
    labels = torch.tensor([0, 2, 1])
    weights, biases, conds = extension_arguments(model, labels)
    g = torch.Generator().manual_seed(7)
    u = torch.rand(3, 3, 5, 4, generator=g)
    known = torch.randint(0, 256, (3, 3, 5, 4), generator=g, dtype=torch.uint8)
    mask = torch.rand(3, 3, 5, 4, generator=g) < 0.4
    args = (u, weights, biases, conds, 3, 0.9, known, mask)
    want = torch.ops.pixelcnn.cached_sample(*args)
    got = torch.ops.pixelcnn.cached_sample_emulated(*args)
    assert torch.equal(got[mask], known[mask])
    assert torch.equal(got, want)


def test_bad_inputs_get_clear_errors():
    model = random_model(channels=1, num_classes=2, hidden=8, blocks=1, kernel_size=3, size=(3, 3))
    labels = torch.tensor([0, 1])
    weights, biases, conds = extension_arguments(model, labels)
    u = torch.rand(2, 1, 3, 3)
    op = torch.ops.pixelcnn.cached_sample_emulated
    with pytest.raises(
        RuntimeError, match=r"class vector 1 must be \[2, 8\] of the weights' dtype and device, got Float"
    ):
        op(u, weights, biases, [conds[0], conds[1].float()], 1, 1.0)
    with pytest.raises(RuntimeError, match=r"bias 2 must be \[8\] of the weights' dtype and device, got Float \[8\]"):
        op(u, weights, [b if i != 2 else b.float() for i, b in enumerate(biases)], conds, 1, 1.0)
    with pytest.raises(RuntimeError, match="weights must be float32 or float64"):
        op(u, [w.half() for w in weights], [b.half() for b in biases], [c.half() for c in conds], 1, 1.0)
    # any layout is accepted: non-contiguous inputs are made contiguous
    want = op(u, weights, biases, conds, 1, 1.0)
    u_t = u.transpose(2, 3).contiguous().transpose(2, 3)
    assert not u_t.is_contiguous()
    assert torch.equal(
        op(u_t, [w.transpose(2, 3).contiguous().transpose(2, 3) for w in weights], biases, conds, 1, 1.0), want
    )


def test_cuda_emulated_refuses_a_model_on_another_device():
    model = random_model(channels=1, num_classes=0, hidden=8, blocks=1, kernel_size=3, size=(3, 3)).to("meta")
    with pytest.raises(ValueError, match="'cuda_emulated' runs the CUDA kernels on the CPU: move the model"):
        sample(model, None, 1.0, None, "cuda_emulated", n=1, uniforms=torch.rand(1, 1, 3, 3))


def test_cli_samples_with_cuda_emulated(tmp_path):
    from pixelcnn.sample import main
    from tests.helpers import write_checkpoint

    path, _ = write_checkpoint(tmp_path, channels=1, size=(4, 4), num_classes=2, hidden=8, blocks=1, kernel_size=3)
    out = tmp_path / "grid.png"
    assert main(["--checkpoint", path, "--out", str(out), "--n-per-class", "2", "--method", "cuda_emulated"]) == 0
    assert out.stat().st_size > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
@pytest.mark.parametrize("n,steps_per_launch", [(4, "0"), (21, "0"), (5, "1")])
def test_real_cuda_equals_cpu_op_and_emulation_bit_for_bit_in_float64(n, steps_per_launch, monkeypatch):
    from pixelcnn.extension import cuda_kernels_built

    assert cuda_kernels_built(), "the extension was built without its CUDA kernels"
    monkeypatch.setenv("PIXELCNN_CUDA_STEPS_PER_LAUNCH", steps_per_launch)
    model = random_model(
        channels=3, num_classes=4, hidden=16, blocks=2, kernel_size=5, size=(8, 7), dtype=torch.float64, std=0.2
    )
    labels = torch.arange(n) % 4
    u = torch.rand(n, 3, 8, 7, generator=torch.Generator().manual_seed(4))
    want = sample(model, labels, 0.9, None, "cached_ext", uniforms=u)
    emulated = sample(model, labels, 0.9, None, "cuda_emulated", uniforms=u)
    got = sample(model.cuda(), labels.cuda(), 0.9, None, "cached_ext", uniforms=u.cuda())
    assert want.float().std() > 10
    assert torch.equal(emulated, want)
    assert torch.equal(got.cpu(), want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_real_cuda_equals_its_emulation_bit_for_bit_in_float32():
    """float32: the GPU build (--fmad=false, IEEE division, no flush to zero) and the emulation (-ffp-contract=off,
    SSE) do the same float operations in the same order, so they agree exactly; the CPU op's FMA tiles may not."""
    model = random_model(
        channels=3, num_classes=4, hidden=16, blocks=2, kernel_size=5, size=(8, 7), dtype=torch.float32, std=0.1
    )
    labels = torch.arange(20) % 4
    u = torch.rand(20, 3, 8, 7, generator=torch.Generator().manual_seed(6))
    emulated = sample(model, labels, 1.0, None, "cuda_emulated", uniforms=u)
    got = sample(model.cuda(), labels.cuda(), 1.0, None, "cached_ext", uniforms=u.cuda()).cpu()
    cpu = sample(model, labels, 1.0, None, "cached_ext", uniforms=u)
    assert emulated.float().std() > 10
    assert torch.equal(got, emulated)
    assert (got == cpu).float().mean() >= 0.99
