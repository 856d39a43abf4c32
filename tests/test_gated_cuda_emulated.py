"""The gated CUDA sampler's own kernel source (csrc/cuda/gated_kernels.cuh) run on the CPU under the CUDA emulation
(``cuda_emulated`` on a ``GatedPixelCNN``) against the Python cached sampler (``GatedCachedStep``) and the naive
reference (docs/DESIGN.md §5, §6); and, on a GPU, the real CUDA build against both. The emulation is slow: models
are tiny (h = 8, 1-2 layers, 4x5 images)."""

import math

import pytest
import torch

from pixelcnn.extension import extension_error, load_extension
from pixelcnn.ops.cached_sample import gated_cached_sample
from pixelcnn.sampling import extension_arguments, sample
from tests.helpers import random_model


@pytest.fixture(scope="module", autouse=True)
def extension():
    assert load_extension() is not None, f"the emulated CUDA kernels are part of pixelcnn._C: {extension_error()}"


def gated_model(channels=3, num_classes=0, hidden=8, blocks=1, kernel_size=5, size=(4, 5), **kw):
    return random_model(
        channels=channels,
        num_classes=num_classes,
        hidden=hidden,
        blocks=blocks,
        kernel_size=kernel_size,
        size=size,
        arch="gated",
        **kw,
    )


def _launches() -> int:
    return torch.ops.pixelcnn.emulated_launches()


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("conditional", [True, False])
def test_gated_emulated_kernels_equal_naive_and_cached_bit_for_bit_in_float64(channels, conditional):
    # 9 images: more image groups than the emulated device's 8 resident blocks, so blocks loop over groups
    model = gated_model(channels=channels, num_classes=5 if conditional else 0, std=0.3)
    n = 9
    labels = torch.arange(n) % 5 if conditional else None
    images = {m: sample(model, labels, 0.7, torch.Generator().manual_seed(3), m, n=n) for m in ("naive", "cached")}
    images["cuda_emulated"] = sample(model, labels, 0.7, torch.Generator().manual_seed(3), "cuda_emulated", n=n)
    assert images["naive"].float().std() > 10  # a real spread of values, not a constant image
    assert torch.equal(images["cached"], images["naive"])
    assert torch.equal(images["cuda_emulated"], images["naive"])


@pytest.mark.parametrize("temperature", [0.6, 1.7])
def test_gated_emulated_kernels_in_groups_of_four_images_and_two_blocks_equal_cached_in_float64(temperature):
    """n = 17: 4 images per step-kernel block (the last group partial), 8 positions per row-kernel tile (M = W*N =
    85, the last tile partial, tiles crossing image boundaries); 2 gated blocks after layer 0, k0 = 3."""
    n = 17
    model = gated_model(channels=3, num_classes=4, blocks=2, kernel_size=3, seed=n, std=0.3)
    labels = torch.arange(n) % 4
    want = sample(model, labels, temperature, torch.Generator().manual_seed(n), "cached", n=n)
    got = sample(model, labels, temperature, torch.Generator().manual_seed(n), "cuda_emulated", n=n)
    assert want.float().std() > 10
    assert torch.equal(got, want)


@pytest.mark.parametrize("channels", [1, 3])
def test_gated_emulated_completion_copies_known_subpixels_like_the_cached_sampler(channels):
    model = gated_model(channels=channels, num_classes=3)
    labels = torch.tensor([0, 2, 1])
    g = torch.Generator().manual_seed(7)
    known = torch.randint(0, 256, (3, channels, 4, 5), generator=g, dtype=torch.uint8)
    mask = torch.rand(3, channels, 4, 5, generator=g) < 0.4
    want = sample(model, labels, 0.9, torch.Generator().manual_seed(8), "cached", known=known, known_mask=mask)
    got = sample(model, labels, 0.9, torch.Generator().manual_seed(8), "cuda_emulated", known=known, known_mask=mask)
    assert torch.equal(got[mask], known[mask])
    assert got[~mask].float().std() > 10
    assert torch.equal(got, want)


@pytest.mark.parametrize("n", [3, 20])
def test_gated_emulated_kernels_in_float32_agree_with_cached_on_at_least_99_percent_of_subpixels(n):
    """float32: torch's products and tanh/sigmoid round differently from the kernels' dense() and exp_rn gate, so a
    logit can differ in its last bits and flip a draw whose target lies that close to a CDF value (rare)."""
    model = gated_model(channels=3, num_classes=4, hidden=16, dtype=torch.float32, std=0.2)
    labels = torch.arange(n) % 4
    a = sample(model, labels, 1.0, torch.Generator().manual_seed(5), "cached")
    b = sample(model, labels, 1.0, torch.Generator().manual_seed(5), "cuda_emulated")
    assert a.float().std() > 10
    assert (a == b).float().mean() >= 0.99


def test_gated_launches_per_row_the_layers_then_the_rows_subpixels_in_one_launch_or_several(monkeypatch):
    """Per row: one vertical-stack launch per layer, then the row's W*C sub-pixels in one launch
    (PIXELCNN_CUDA_STEPS_PER_LAUNCH = 0) or in launches of at most that many steps; same images either way."""
    model = gated_model(channels=3, blocks=1, size=(4, 3))
    layers, (h, w), c = 2, (4, 3), 3
    monkeypatch.delenv("PIXELCNN_CUDA_STEPS_PER_LAUNCH", raising=False)
    before = _launches()
    whole = sample(model, None, 1.0, torch.Generator().manual_seed(0), "cuda_emulated", n=2)
    assert _launches() - before == h * (layers + 1)
    assert whole.float().std() > 10
    for per_launch in (1, 5):
        monkeypatch.setenv("PIXELCNN_CUDA_STEPS_PER_LAUNCH", str(per_launch))
        before = _launches()
        got = sample(model, None, 1.0, torch.Generator().manual_seed(0), "cuda_emulated", n=2)
        assert _launches() - before == h * (layers + math.ceil(w * c / per_launch))
        assert torch.equal(got, whole)


@pytest.mark.parametrize("hidden", [200, 600])
def test_gated_shared_memory_above_48_kb_is_allowed_by_the_kernel_attribute(hidden):
    """float64: at h = 200 a tile of 8 positions needs (6h patch + 4h) * 8 * 8 = 128 KB of shared memory (allowed
    only after cudaFuncSetAttribute); at h = 600 8 positions exceed the device and the row kernel takes one at a
    time."""
    model = gated_model(channels=1, hidden=hidden, size=(3, 3), std=0.03)
    want = sample(model, None, 1.0, torch.Generator().manual_seed(1), "cached", n=2)
    got = sample(model, None, 1.0, torch.Generator().manual_seed(1), "cuda_emulated", n=2)
    assert want.float().std() > 10
    assert torch.equal(got, want)


def masked_gated_arguments(channels, hidden, k0, generator):
    """gated_cached_sample arguments of one layer with a k0 x k0 first kernel, random within its masks' rows."""
    h2, p = 2 * hidden, k0 // 2
    v = torch.randn(h2, channels, k0, k0, generator=generator, dtype=torch.float64)
    v[:, :, p:] = 0
    hc = torch.randn(h2, channels, k0, k0, generator=generator, dtype=torch.float64)
    hc[:, :, :p] = 0
    hc[:, :, p + 1 :] = 0
    hc[:, :, p, p + 1 :] = 0
    shapes = [(h2, h2, 1, 1), (hidden, hidden, 1, 1), (h2, hidden, 1, 1), (256 * channels, h2, 1, 1)]
    weights = [v, hc] + [torch.randn(s, generator=generator, dtype=torch.float64) for s in shapes]
    biases = [torch.zeros(w.shape[0], dtype=torch.float64) for w in weights]
    return weights, biases


def test_gated_rows_beyond_the_devices_shared_memory_get_a_clear_error():
    """A 141x141 first kernel over 3 colours has 70 * 141 * 3 live vertical taps: 231 KB of float64 for one position,
    beyond the 227 KB a block may use on sm_90 (the emulated device)."""
    weights, biases = masked_gated_arguments(3, 4, 141, torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match=r"need \d+ bytes of shared memory, the device allows 232448 per block"):
        torch.ops.pixelcnn.gated_cached_sample_emulated(torch.rand(1, 3, 2, 2), weights, biases, [], 3, 1.0)


def test_gated_emulated_bad_inputs_get_clear_errors():
    model = gated_model(channels=1, num_classes=2, size=(3, 3))
    labels = torch.tensor([0, 1])
    weights, biases, conds = extension_arguments(model, labels)
    u = torch.rand(2, 1, 3, 3)
    op = torch.ops.pixelcnn.gated_cached_sample_emulated
    with pytest.raises(RuntimeError, match="gated_cached_sample_emulated: weights must be float32 or float64"):
        op(u, [w.half() for w in weights], [b.half() for b in biases], [c.half() for c in conds], 1, 1.0)
    with pytest.raises(RuntimeError, match="pass both known and known_mask, or neither"):
        op(u, weights, biases, conds, 1, 1.0, torch.zeros(2, 1, 3, 3, dtype=torch.uint8), None)
    # any layout is accepted: non-contiguous inputs are made contiguous
    want = op(u, weights, biases, conds, 1, 1.0)
    u_t = u.transpose(2, 3).contiguous().transpose(2, 3)
    assert not u_t.is_contiguous()
    assert torch.equal(
        op(u_t, [w.transpose(2, 3).contiguous().transpose(2, 3) for w in weights], biases, conds, 1, 1.0), want
    )


def test_cli_samples_a_gated_checkpoint_with_cuda_emulated(tmp_path):
    from pixelcnn.sample import main
    from tests.helpers import write_checkpoint

    path, _ = write_checkpoint(
        tmp_path, channels=1, size=(4, 4), num_classes=2, hidden=8, blocks=1, kernel_size=3, arch="gated"
    )
    out = tmp_path / "grid.png"
    assert main(["--checkpoint", path, "--out", str(out), "--n-per-class", "2", "--method", "cuda_emulated"]) == 0
    assert out.stat().st_size > 0


def _gpu_case(n, dtype, std):
    model = gated_model(channels=3, num_classes=4, hidden=16, blocks=2, size=(8, 7), dtype=dtype, std=std)
    labels = torch.arange(n) % 4
    u = torch.rand(n, 3, 8, 7, generator=torch.Generator().manual_seed(4))
    return model, labels, u


def _on_gpu(model, labels, u, temperature):
    weights, biases, conds = extension_arguments(model.cuda(), labels.cuda())
    return gated_cached_sample(u.cuda(), weights, biases, conds, model.channels, temperature).cpu()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
@pytest.mark.parametrize("n,steps_per_launch", [(4, "0"), (21, "0"), (5, "1")])
def test_real_cuda_gated_equals_cached_and_emulation_bit_for_bit_in_float64(n, steps_per_launch, monkeypatch):
    from pixelcnn.extension import cuda_kernels_built

    assert cuda_kernels_built(), "the extension was built without its CUDA kernels"
    monkeypatch.setenv("PIXELCNN_CUDA_STEPS_PER_LAUNCH", steps_per_launch)
    model, labels, u = _gpu_case(n, torch.float64, 0.2)
    want = sample(model, labels, 0.9, None, "cached", uniforms=u)
    emulated = sample(model, labels, 0.9, None, "cuda_emulated", uniforms=u)
    got = _on_gpu(model, labels, u, 0.9)
    assert want.float().std() > 10
    assert torch.equal(emulated, want)
    assert torch.equal(got, want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_real_cuda_gated_equals_its_emulation_bit_for_bit_in_float32():
    """float32: the GPU build (--fmad=false, IEEE division) and the emulation (-ffp-contract=off) do the same float
    operations in the same order, and the gate is exp_rn in double on both, so they agree exactly."""
    model, labels, u = _gpu_case(20, torch.float32, 0.1)
    emulated = sample(model, labels, 1.0, None, "cuda_emulated", uniforms=u)
    got = _on_gpu(model, labels, u, 1.0)
    assert emulated.float().std() > 10
    assert torch.equal(got, emulated)
