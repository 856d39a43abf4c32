"""The Triton masked-conv kernel itself (Triton's interpreter on CPU, native on GPU) against F.conv2d on the masked
weight: forward, backward, every autotune config, and the registered op under torch.compile(fullgraph=True).

Tolerance: 1e-4 relative (fp32; the kernel uses IEEE fp32 dot products, so the same bound holds on GPU);
bf16/fp16 inputs: 2e-2 relative (fp32 accumulation, 8-bit mantissa inputs/outputs)."""
import os

import pytest
import torch

from pixelcnn.masks import conv_mask
from pixelcnn.ops.masked_conv import masked_conv2d, masked_conv2d_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1",
                                reason="on CPU the kernel runs only under TRITON_INTERPRET=1 (set by conftest.py)")
FP32_TOL = 1e-4
HALF_TOL = 2e-2


def rel_err(got, want):
    return float((got.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-6))


def make_inputs(n, cin, cout, h, w, k, mask_type, colors, bias, cond, residual, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g).to(DEVICE, dtype)
    return dict(x=r(n, cin, h, w), weight=r(cout, cin, k, k) * 0.3,
                mask=conv_mask(cout, cin, k, mask_type, colors).to(DEVICE, dtype),
                bias=r(cout) if bias else None, cond=r(n, cout) if cond else None,
                residual=r(n, cout, h, w) if residual else None)


CASES = [  # (n, cin, cout, h, w, k, mask, colors, bias, cond, residual, relu)
    (1, 1, 6, 7, 9, 7, "A", 1, True, True, False, False),
    (2, 3, 8, 5, 7, 7, "A", 3, True, False, False, True),
    (3, 6, 6, 9, 5, 3, "B", 3, True, True, False, True),
    (2, 5, 7, 6, 6, 3, "B", 1, False, False, True, False),
    (1, 4, 9, 11, 3, 5, "A", 3, False, True, True, True),
    (2, 7, 5, 4, 9, 5, "B", 1, True, False, True, False),
    (2, 9, 12, 5, 5, 1, "B", 3, True, False, True, False),
    (1, 8, 3, 3, 7, 1, "B", 1, False, True, False, True),
    (2, 20, 18, 7, 5, 3, "B", 3, True, True, True, True),  # Cin/Cout beyond one 16-wide block
]


def case_id(c):
    return f"n{c[0]}-c{c[1]}x{c[2]}-{c[3]}x{c[4]}-k{c[5]}{c[6]}-C{c[7]}-b{int(c[8])}c{int(c[9])}r{int(c[10])}a{int(c[11])}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_triton_forward_and_backward_match_conv2d_reference(case):
    *shape, bias, cond, residual, relu = case
    inp = make_inputs(*shape, bias, cond, residual)
    leaves = {k: v.clone().requires_grad_(True) for k, v in inp.items() if v is not None and k != "mask"}
    ref_leaves = {k: v.detach().clone().requires_grad_(True) for k, v in leaves.items()}
    args = lambda d: dict(x=d["x"], weight=d["weight"], mask=inp["mask"], bias=d.get("bias"), cond=d.get("cond"),
                          residual=d.get("residual"), relu=relu)
    got = masked_conv2d(**args(leaves), impl="triton")
    want = masked_conv2d_reference(**args(ref_leaves))
    assert rel_err(got, want) <= FP32_TOL
    grad = torch.randn(want.shape, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    got.backward(grad)
    want.backward(grad)
    for name in leaves:
        assert rel_err(leaves[name].grad, ref_leaves[name].grad) <= FP32_TOL, name
    dead = inp["mask"] == 0
    assert torch.all(leaves["weight"].grad[dead] == 0), "a masked tap received gradient"


def test_the_triton_kernel_runs_not_the_fallback(monkeypatch):
    """Guard against testing the reference against itself: the op must reach the Triton launcher."""
    import pixelcnn.ops.triton_masked_conv as tmc
    calls = []
    real = tmc.masked_conv2d_forward
    monkeypatch.setattr(tmc, "masked_conv2d_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    inp = make_inputs(1, 3, 4, 4, 4, 3, "B", 3, True, False, False)
    masked_conv2d(**inp, relu=False, impl="triton")
    assert calls


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_accumulate_in_fp32(dtype):
    inp = make_inputs(2, 6, 8, 6, 5, 3, "B", 3, True, True, True, dtype=dtype)
    got = masked_conv2d(**inp, relu=True, impl="triton")
    assert got.dtype == dtype
    want = masked_conv2d_reference(**{k: (v.float() if v is not None else None) for k, v in inp.items()}, relu=True)
    assert rel_err(got, want) <= HALF_TOL


@pytest.mark.parametrize("index", range(8))
def test_every_autotune_config_matches_reference(index):
    """Each config in the tuner's list, not only the one it picks (cf. pytorch issue 173068)."""
    from pixelcnn.ops import triton_masked_conv as tmc
    cfg = tmc.CONFIGS[index]
    config = {**cfg.kwargs, "num_warps": cfg.num_warps}
    if DEVICE == "cpu":  # the interpreter is slow with big tiles: keep the problem a few tiles large
        assert tmc.check_against_reference(n=1, cin=20, cout=20, h=5, w=7, k=3, mask_type="B", config=config) \
            <= FP32_TOL
        inp = make_inputs(1, 20, 20, 5, 7, 3, "B", 3, False, False, False)
    else:
        assert tmc.check_against_reference(n=4, cin=96, cout=80, h=13, w=11, k=7, config=config) <= FP32_TOL
        inp = make_inputs(4, 96, 80, 13, 11, 7, "A", 3, False, False, False)
    g = torch.randn(inp["x"].shape[0], inp["weight"].shape[0], *inp["x"].shape[2:]).to(DEVICE)
    gx, gw = tmc.masked_conv2d_backward(g, inp["x"], inp["weight"], inp["mask"], config)
    x = inp["x"].clone().requires_grad_(True)
    w = inp["weight"].clone().requires_grad_(True)
    masked_conv2d_reference(x, w, inp["mask"]).backward(g)
    assert rel_err(gx, x.grad) <= FP32_TOL and rel_err(gw, w.grad) <= FP32_TOL


def test_model_with_triton_op_compiles_fullgraph_without_graph_breaks():
    from tests.helpers import random_model
    model = random_model(channels=3, num_classes=4, hidden=6, blocks=1, kernel_size=3, size=(4, 5),
                         dtype=torch.float32, std=0.2).to(DEVICE)
    image = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8, device=DEVICE)
    labels = torch.tensor([1, 3], device=DEVICE)
    want = model(image, labels)
    model.set_conv_impl("triton")
    explained = torch._dynamo.explain(model)(image, labels)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    got = compiled(image, labels)
    assert rel_err(got, want) <= FP32_TOL
    # gradients flow through the registered autograd formula under compile too
    from pixelcnn.likelihood import nll_nats
    nll_nats(compiled(image, labels), image).backward()
    g_triton = model.conv_first.weight.grad.clone()
    model.zero_grad()
    model.set_conv_impl("reference")
    nll_nats(model(image, labels), image).backward()
    assert rel_err(g_triton, model.conv_first.weight.grad) <= FP32_TOL
