"""Group "masked_conv": one masked conv layer per seed shape, forward and forward+backward, TFLOP/s counted over the
live taps only, for the reference (cuDNN / oneDNN on the full W*M), the cropped default path (the same conv on the
(k//2+1) x k crop with top-only padding; on CPU its backward as GEMMs) and, on a GPU, the Triton kernel, in fp32
(TF32 as PyTorch allows it) and, on a GPU, bf16. Every path is checked against the reference before timing.
``make gpu-check`` times the same cases with ``triton.testing.do_bench`` (``benchmarks.gpu_check``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from benchmarks.conftest import record
from pixelcnn.masks import conv_mask, live_taps
from pixelcnn.ops.masked_conv import masked_conv2d
from pixelcnn.ops.reference import masked_conv2d_reference

CUDA = torch.cuda.is_available()


@dataclass(frozen=True)
class ConvCase:
    name: str
    cin: int
    cout: int
    k: int
    mask_type: str
    colors: int
    relu: bool
    n: int = 64
    size: int = 32

    def flops(self, backward: bool) -> int:
        """2 * pixels * Cin * Cout * live taps per GEMM; backward adds grad_weight, and grad_input unless the input
        is the image (first layer)."""
        one = (
            2
            * self.n
            * self.size
            * self.size
            * self.cin
            * self.cout
            * live_taps(conv_mask(self.cout, self.cin, self.k, self.mask_type, self.colors)).count
        )
        return one * (1 + (1 + (self.mask_type == "B")) * backward)


SEED_CASES = [
    ConvCase("7x7A-C1", 1, 512, 7, "A", 1, False),
    ConvCase("7x7A-C3", 3, 512, 7, "A", 3, False),
    ConvCase("3x3B-h64", 64, 64, 3, "B", 3, True),
    ConvCase("3x3B-h256", 256, 256, 3, "B", 3, True),
]
IMPLS = ["reference", "cropped", "triton"]


def make_case(case: ConvCase, dtype: torch.dtype, device: str, scale_down: bool = False):
    """Inputs of one layer (channels-last activations, the layout every path is fastest in)."""
    n, size, cin, cout = (case.n, case.size, case.cin, case.cout)
    if scale_down:
        n, size, cin, cout = 2, 8, min(cin, 16), min(cout, 16)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, cin, size, size, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
    w = (torch.randn(cout, cin, case.k, case.k, generator=g) * 0.05).to(device, dtype)
    mask = conv_mask(cout, cin, case.k, case.mask_type, case.colors).to(device, dtype)
    bias = torch.randn(cout, generator=g).to(device, dtype)
    cond = torch.randn(n, cout, generator=g).to(device, dtype)
    return x, w, mask, bias, cond


def step_fn(impl: str, case: ConvCase, inputs, backward: bool):
    """A callable running one forward (and backward) of ``impl``; the image of the first layer needs no grad."""
    x, w, mask, bias, cond = inputs
    live = live_taps(mask)  # as MaskedConv2d keeps it: read once, not per call
    x = x.detach().requires_grad_(backward and case.mask_type == "B")
    w = w.detach().requires_grad_(backward)
    bias = bias.detach().requires_grad_(backward)

    def forward():
        if impl == "reference":  # the full k x k kernel W*M: what cuDNN / oneDNN are given without the crop
            return masked_conv2d_reference(x, w, mask, bias, cond, None, case.relu)
        if impl == "cropped":  # the default path: the crop, and on CPU its GEMM backward
            return masked_conv2d(x, w, mask, bias, cond, None, case.relu, "reference", live)
        return masked_conv2d(x, w, mask, bias, cond, None, case.relu, impl, live)

    if not backward:
        return lambda: forward()
    leaves = [t for t in (x, w, bias) if t.requires_grad]

    def both():
        y = forward()
        return torch.autograd.grad(y, leaves, torch.ones_like(y))

    return both


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", SEED_CASES, ids=lambda c: c.name)
def test_masked_conv(benchmark, timing, case, impl, dtype, backward):
    if impl == "triton" and not CUDA:
        pytest.skip("the Triton kernel is timed on a GPU only (on CPU it runs the interpreter)")
    if dtype == torch.bfloat16 and not CUDA:
        pytest.skip("bf16 convolutions are timed on a GPU only")
    device = "cuda" if CUDA else "cpu"
    if not timing:  # `make test`: one small run, checked against the reference
        inputs = make_case(case, dtype, device, scale_down=True)
    elif CUDA:
        inputs = make_case(case, dtype, device)
    else:  # a seed-shaped layer at batch 4 keeps a CPU run to seconds
        inputs = make_case(
            ConvCase(case.name, case.cin, case.cout, case.k, case.mask_type, case.colors, case.relu, n=4), dtype, device
        )
    with torch.no_grad():
        want = step_fn("reference", case, inputs, False)().float()
        got = step_fn(impl, case, inputs, False)().float()
    tol = 2e-2 if (dtype == torch.bfloat16 or CUDA) else 1e-4
    assert float((got - want).abs().max()) <= tol * float(want.abs().max())
    fn = step_fn(impl, case, inputs, backward)
    n = inputs[0].shape[0]
    scale = (
        n
        / case.n
        * (inputs[0].shape[1] * inputs[1].shape[0])
        / (case.cin * case.cout)
        * (inputs[0].shape[2] / case.size) ** 2
    )

    def run():
        fn()
        if CUDA:
            torch.cuda.synchronize()

    benchmark.group = (
        f"masked_conv-{case.name}-{'bf16' if dtype == torch.bfloat16 else 'fp32'}-{'fwd+bwd' if backward else 'fwd'}"
    )
    benchmark.extra_info["tflop"] = case.flops(backward) * scale / 1e12
    record(benchmark, run, items=int(case.flops(backward) * scale), unit="flop", reference=impl == "reference")
