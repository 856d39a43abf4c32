"""The Triton masked-conv kernel (Triton's interpreter on CPU, native on a GPU) against a float64 reference.

Bound (docs/DESIGN.md §6), elementwise, for the output and every gradient:
    |ours - ref64| <= 2 * |torch - ref64| + eps
where ``torch`` is PyTorch's own conv on W*M at the same dtype and precision settings, and
``eps = 2**-18 * max|ref64| + u * |ref64|`` covers fp32 accumulation order and one rounding to the output dtype
(u = 2**-8 bf16 (2**-7 under the interpreter), 2**-11 fp16, 2**-24 fp32). fp32 inputs are rounded to the TF32 grid
first, so on a GPU the TF32 input rounding is the same for both sides and only accumulation order differs.
"""

import os

import pytest
import torch

from pixelcnn.masks import conv_mask, live_taps
from pixelcnn.ops.masked_conv import masked_conv2d
from pixelcnn.ops.reference import masked_conv2d_reference

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
pytestmark = pytest.mark.skipif(
    not CUDA and os.environ.get("TRITON_INTERPRET") != "1",
    reason="on CPU the kernel runs only under TRITON_INTERPRET=1 (set by conftest.py)",
)
gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (compiled kernels, TF32 and cuDNN)")
# Triton's interpreter converts fp32 to bf16 by truncation (a GPU rounds to nearest): one whole ulp there
UNIT = {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8 if CUDA else 2.0**-7, torch.float16: 2.0**-11}


def tf32_exact(t: torch.Tensor) -> torch.Tensor:
    """fp32 values with at most TF32's 10 mantissa bits (truncated), so TF32 rounding leaves them unchanged."""
    if t.dtype != torch.float32:
        return t
    return (t.view(torch.int32) & ~0x1FFF).view(torch.float32)


def make_inputs(
    n, cin, cout, h, w, k, mask_type, colors, bias, cond, residual, dtype=torch.float32, seed=0, device=DEVICE
):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: tf32_exact((torch.randn(*s, generator=g) * scale).to(device, dtype))
    return dict(
        x=r(n, cin, h, w),
        weight=r(cout, cin, k, k, scale=0.3),
        mask=conv_mask(cout, cin, k, mask_type, colors, gated_out=mask_type[0] == "h").to(device, dtype),
        bias=r(cout) if bias else None,
        cond=r(n, cout) if cond else None,
        residual=r(n, cout, h, w) if residual else None,
    )


def assert_within_bound(ours, torch_same, ref64, name="output"):
    dtype = ours.dtype
    ours, torch_same = ours.double(), torch_same.double()
    eps = 2.0**-18 * ref64.abs().max() + UNIT[dtype] * ref64.abs()
    excess = (ours - ref64).abs() - (2 * (torch_same - ref64).abs() + eps)
    worst = int(excess.flatten().argmax())
    assert excess.max() <= 0, (
        f"{name}: |ours - ref64| exceeds 2|torch - ref64| + eps at flat index {worst}: "
        f"ours {ours.flatten()[worst]:.8g}, torch {torch_same.flatten()[worst]:.8g}, "
        f"ref64 {ref64.flatten()[worst]:.8g}"
    )


def run(inp, relu, impl, dtype=None, grad_out=None, needs=("x", "weight", "bias", "cond", "residual")):
    """Output and gradients of the masked conv through ``impl`` with inputs cast to ``dtype``."""
    leaves = {
        k: (v.to(dtype) if dtype else v).detach().clone().requires_grad_(k in needs)
        for k, v in inp.items()
        if v is not None and k != "mask"
    }
    mask = inp["mask"].to(dtype) if dtype else inp["mask"]
    kw = dict(
        x=leaves["x"],
        weight=leaves["weight"],
        mask=mask,
        bias=leaves.get("bias"),
        cond=leaves.get("cond"),
        residual=leaves.get("residual"),
        relu=relu,
    )
    out = masked_conv2d(**kw, impl=impl) if impl else masked_conv2d_reference(**kw)
    grads = {}
    if grad_out is not None:
        want = [k for k in leaves if leaves[k].requires_grad]
        got = torch.autograd.grad(out, [leaves[k] for k in want], grad_out.to(out.dtype))
        grads = dict(zip(want, got, strict=True))
    return out, grads


def check_against_ref64(inp, relu, seed=1):
    """Triton op vs PyTorch at the same dtype vs the float64 reference: output and every gradient."""
    dtype = inp["x"].dtype
    ours, g_ours = None, None
    ref, _ = run(inp, relu, None, torch.float64)
    grad_out = tf32_exact(torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE, dtype))
    ours, g_ours = run(inp, relu, "triton", grad_out=grad_out)
    same, g_same = run(inp, relu, None, grad_out=grad_out)
    _, g_ref = run(inp, relu, None, torch.float64, grad_out=grad_out.double())
    assert ours.dtype == dtype and ours.shape == same.shape
    assert_within_bound(ours, same, ref)
    for name in g_ref:
        assert g_ours[name].dtype == inp[name].dtype, name
        assert_within_bound(g_ours[name], g_same[name], g_ref[name], name)
    dead = inp["mask"] == 0
    assert torch.all(g_ours["weight"][dead] == 0), "a masked tap received gradient"


CASES = [  # (n, cin, cout, h, w, k, mask, colors, bias, cond, residual, relu)
    (1, 1, 6, 7, 9, 7, "A", 1, True, True, False, False),  # first layer, grey: live taps folded into K
    (2, 3, 8, 5, 7, 7, "A", 3, True, False, False, True),  # first layer, RGB
    (3, 6, 6, 9, 5, 3, "B", 3, True, True, False, True),
    (2, 5, 7, 6, 6, 3, "B", 1, False, False, True, False),
    (1, 4, 9, 11, 3, 5, "A", 3, False, True, True, True),
    (2, 17, 5, 4, 9, 5, "B", 1, True, False, True, False),  # per-tap K-chunk loop
    (2, 9, 12, 5, 5, 1, "B", 3, True, False, True, False),
    (2, 20, 18, 7, 5, 3, "B", 3, True, True, True, True),  # Cin/Cout beyond one 16-wide block
    # the gated stacks' masks: vertical (whole rows, the centre row included after the first layer) and horizontal
    (2, 3, 8, 6, 7, 7, "vA", 3, True, True, False, False),  # gated first layer, folded
    (2, 1, 8, 6, 7, 7, "hA", 1, True, False, True, False),
    (2, 6, 8, 7, 5, 3, "vB", 3, True, True, True, False),
    (2, 17, 6, 5, 6, 3, "hB", 3, False, True, True, True),
    (1, 5, 7, 6, 6, 5, "vB", 1, True, False, False, True),
    # the gated layer shapes past the first: hidden channels on the per-tap path (vA's p rows, hA/hB's one row)
    (2, 16, 8, 5, 6, 5, "vA", 1, True, True, True, False),
    (1, 18, 8, 4, 7, 5, "hB", 1, True, True, True, False),
    (1, 16, 10, 4, 5, 3, "hA", 3, False, False, True, False),
    (2, 3, 8, 4, 5, 5, "hA", 3, True, False, False, False),  # folded, 1 x 3 on colours
]


def case_id(c):
    flags = "".join(f"{f}{int(v)}" for f, v in zip("bcra", c[8:], strict=True))
    return f"n{c[0]}-c{c[1]}x{c[2]}-{c[3]}x{c[4]}-k{c[5]}{c[6]}-C{c[7]}-{flags}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_and_backward_within_bound_of_float64_reference(case):
    *shape, bias, cond, residual, relu = case
    check_against_ref64(make_inputs(*shape, bias, cond, residual), relu)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_within_bound_of_float64_reference(dtype):
    check_against_ref64(make_inputs(2, 6, 8, 6, 5, 3, "B", 3, True, True, True, dtype=dtype), relu=True)
    check_against_ref64(make_inputs(2, 3, 8, 4, 5, 5, "A", 3, True, True, False, dtype=dtype), relu=False)


def test_the_triton_kernel_runs_not_the_fallback(monkeypatch):
    """Guard against testing the reference against itself: the op must reach the Triton launcher."""
    import pixelcnn.ops.triton_masked_conv as tmc

    calls = []
    real = tmc.masked_conv2d_forward
    monkeypatch.setattr(tmc, "masked_conv2d_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    inp = make_inputs(1, 3, 4, 4, 4, 3, "B", 3, True, False, False)
    masked_conv2d(**inp, relu=False, impl="triton")
    assert calls


def _count_grad_kernels(monkeypatch):
    import pixelcnn.ops.triton_masked_conv as tmc

    calls = {"grad_input": 0, "grad_weight": 0}
    for name in calls:
        real = getattr(tmc, f"masked_conv2d_{name}")

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(tmc, f"masked_conv2d_{name}", counted)
    return calls


@pytest.mark.parametrize("needs", [("weight", "bias"), ("x",), ("x", "weight")])
def test_backward_computes_only_the_gradients_autograd_needs(monkeypatch, needs):
    calls = _count_grad_kernels(monkeypatch)
    inp = make_inputs(1, 16, 16, 4, 5, 3, "B", 1, True, False, False)
    out, grads = run(inp, True, "triton", grad_out=torch.ones(1, 16, 4, 5, device=DEVICE), needs=needs)
    assert set(grads) == set(needs)
    assert calls == {"grad_input": int("x" in needs), "grad_weight": int("weight" in needs)}


def test_model_first_layer_skips_grad_input(monkeypatch):
    """The image needs no gradient: one grad_input per layer except the first, one grad_weight per layer."""
    from pixelcnn.likelihood import nll_nats
    from tests.helpers import random_model

    calls = _count_grad_kernels(monkeypatch)
    model = (
        random_model(
            channels=1, num_classes=2, hidden=8, blocks=1, kernel_size=3, size=(4, 4), dtype=torch.float32, std=0.2
        )
        .to(DEVICE)
        .set_conv_impl("triton")
    )
    image = torch.randint(0, 256, (1, 1, 4, 4), dtype=torch.uint8, device=DEVICE)
    nll_nats(model(image, torch.tensor([1], device=DEVICE)), image).backward()
    layers = len(model.masked_convs())
    assert calls == {"grad_input": layers - 1, "grad_weight": layers}


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_fake_kernels_return_the_real_kernels_strides(layout):
    """Shape, dtype and strides of every op's fake (used by torch.compile) equal the real kernel's."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    inp = make_inputs(2, 16, 16, 3, 5, 3, "B", 3, True, True, True)
    if layout == "channels_last":
        inp["x"] = inp["x"].contiguous(memory_format=torch.channels_last)
    x, w, m, b, c, r = (inp[k] for k in ("x", "weight", "mask", "bias", "cond", "residual"))
    ops, live = torch.ops.pixelcnn, list(live_taps(m))
    calls = [
        (ops.masked_conv2d, (x, w, m, b, c, r, True, live)),
        (ops.masked_conv2d_grad_input, (r, w, m, live)),
        (ops.masked_conv2d_grad_weight, (r, x, w, m, live)),
        (ops.masked_conv2d, (x[:, :1], w[:, :1], m[:, :1], b, None, None, False, live)),
    ]  # folded first layer
    for op, args in calls:
        real = op(*args)
        with FakeTensorMode() as mode:
            fake = op(*[mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args])
        assert (fake.shape, fake.dtype, fake.stride()) == (real.shape, real.dtype, real.stride()), op


def test_opcheck_masked_conv_ops():
    """torch.library.opcheck: schema, fake kernel, autograd registration and AOT dispatch of the three ops."""
    inp = make_inputs(1, 4, 4, 3, 3, 3, "B", 1, True, True, True)
    x, w, m, b, c, r = (inp[k] for k in ("x", "weight", "mask", "bias", "cond", "residual"))
    leaf = lambda t: t.clone().requires_grad_(True)
    ops, live = torch.ops.pixelcnn, list(live_taps(m))
    torch.library.opcheck(ops.masked_conv2d.default, (leaf(x), leaf(w), m, leaf(b), leaf(c), leaf(r), True, live))
    torch.library.opcheck(ops.masked_conv2d.default, (x, leaf(w), m, None, None, None, False, live))
    torch.library.opcheck(ops.masked_conv2d_grad_input.default, (r, w, m, live))
    torch.library.opcheck(ops.masked_conv2d_grad_weight.default, (r, x, w, m, live))


def test_autocast_runs_the_op_in_bfloat16_with_fp32_weight_gradients():
    """--amp: under autocast the op computes in bf16 like F.conv2d; the fp32 parameters get fp32 gradients."""
    inp = make_inputs(1, 16, 16, 4, 4, 3, "B", 1, True, False, False)
    w = inp["weight"].clone().requires_grad_(True)
    device_type = "cuda" if CUDA else "cpu"
    with torch.autocast(device_type, dtype=torch.bfloat16):
        out = masked_conv2d(inp["x"], w, inp["mask"], inp["bias"], relu=True, impl="triton")
        ref = masked_conv2d_reference(inp["x"], w, inp["mask"], inp["bias"], relu=True)
    assert out.dtype == torch.bfloat16 == ref.dtype
    out.float().sum().backward()
    assert w.grad.dtype == torch.float32
    ref64 = masked_conv2d_reference(*(inp[k].double() for k in ("x", "weight", "mask", "bias")), relu=True)
    assert_within_bound(out, ref, ref64)


def test_sixty_four_bit_offsets_path_matches(monkeypatch):
    """The I64 variant (chosen for tensors of 2**31 elements or more) computes the same as the 32-bit one."""
    import pixelcnn.ops.triton_masked_conv as tmc

    inp = make_inputs(2, 16, 16, 4, 5, 3, "B", 3, True, True, True)
    grad_out = torch.randn(2, 16, 4, 5, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    want, g_want = run(inp, True, "triton", grad_out=grad_out)
    monkeypatch.setattr(tmc, "_needs_i64", lambda *t: True)
    got, g_got = run(inp, True, "triton", grad_out=grad_out)
    assert torch.equal(got, want)
    for name in g_want:
        assert torch.equal(g_got[name], g_want[name]), name


def test_too_large_a_weight_is_a_clear_error():
    from pixelcnn.ops.triton_masked_conv import _check_weight_size

    with pytest.raises(ValueError, match="32-bit weight offsets"):
        _check_weight_size(2**31)


def _config_dict(cfg):
    return {**cfg.kwargs, "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}


def _config_cases():
    from pixelcnn.ops import triton_masked_conv as tmc

    return [("conv", i) for i in range(len(tmc.CONFIGS))] + [("wgrad", i) for i in range(len(tmc.WGRAD_CONFIGS))]


@pytest.mark.parametrize("kind,index", _config_cases())
def test_every_autotune_config_matches_reference(kind, index):
    """Each config in the tuner's lists, not only the one it picks (cf. pytorch issue 173068), forward and backward,
    on the per-tap path and on the folded first layer; tiny shapes (one or two tiles) for the interpreter."""
    from pixelcnn.ops import triton_masked_conv as tmc

    cfg = _config_dict((tmc.CONFIGS if kind == "conv" else tmc.WGRAD_CONFIGS)[index])
    for shape in [(1, 20, 20, 5, 7, 3, "B", 3), (1, 3, 20, 4, 5, 5, "A", 3)]:
        inp = make_inputs(*shape, True, True, False)
        x, w, m = inp["x"], inp["weight"], inp["mask"]
        g = tf32_exact(torch.randn(1, w.shape[0], *x.shape[2:], generator=torch.Generator().manual_seed(2)).to(DEVICE))
        x64, w64 = x.double().requires_grad_(True), w.double().requires_grad_(True)
        ref = masked_conv2d_reference(x64, w64, m.double(), inp["bias"].double(), inp["cond"].double())
        ref.backward(g.double())
        xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        same = masked_conv2d_reference(xs, ws, m, inp["bias"], inp["cond"])
        same.backward(g)
        if kind == "conv":
            ours = tmc.masked_conv2d_forward(x, w, m, inp["bias"], inp["cond"], None, False, config=cfg)
            assert_within_bound(ours, same, ref.detach())
            if not tmc.folds_taps(x.shape[1], w.shape[-1]):
                gx = tmc.masked_conv2d_grad_input(g, w, m, config=cfg)
                assert_within_bound(gx, xs.grad, x64.grad, "grad_input")
        else:
            gw = tmc.masked_conv2d_grad_weight(g, x, w, m, config=cfg)
            assert_within_bound(gw, ws.grad, w64.grad, "grad_weight")


@pytest.mark.parametrize("mask_type", ["A", "B", "vA", "vB", "hA", "hB"])
def test_kernel_visits_the_live_rectangle_taps_only(mask_type, monkeypatch):
    """The forward and grad_input kernels reduce over the mask's live taps and no others (a 5x5 horizontal layer: 3
    taps, one row; vertical: 10 or 15; the seed's: 13), and the packed weight holds exactly W*M at those taps."""
    import pixelcnn.ops.triton_masked_conv as tmc

    k, p, cin = 5, 2, 16
    want = {"A": p * k + p + 1, "B": p * k + p + 1, "vA": p * k, "vB": (p + 1) * k, "hA": p + 1, "hB": p + 1}
    inp = make_inputs(1, cin, 8, 4, 5, k, mask_type, 3, True, False, False)
    live = live_taps(inp["mask"])
    wm = inp["weight"] * inp["mask"]
    packed = tmc.pack_weight_taps(inp["weight"], inp["mask"], live).view(-1, cin, 8)
    assert torch.equal(packed, torch.stack([wm[:, :, i, j].t() for i, j in live.offsets()]))
    taps, real = [], tmc._launch_conv
    monkeypatch.setattr(
        tmc, "_launch_conv", lambda x, wpk, *a, **kw: taps.append(wpk.shape[0] // x.shape[1]) or real(x, wpk, *a, **kw)
    )
    check_against_ref64(inp, relu=False)
    assert taps == [want[mask_type]] * 2  # forward and grad_input


def test_precision_follows_torch_settings():
    """fp32 on CUDA: TF32 exactly when PyTorch's convolutions may use it; CPU tensors (interpreter): IEEE."""
    from pixelcnn.ops import triton_masked_conv as tmc
    from pixelcnn.ops.precision import conv_precision, legacy_flag_readable

    for precision in ("tf32", "ieee"):
        with conv_precision(precision):
            assert tmc.fp32_precision() == precision
            # torch's own view agrees (what cuDNN convs and exports read)
            assert torch.backends.cudnn.allow_tf32 == (precision == "tf32")
            assert legacy_flag_readable()
    assert tmc.dot_precision(torch.zeros(1)) == "ieee"


def test_precision_none_inherits_and_the_legacy_switch_is_honoured():
    """torch >= 2.9: a conv setting of "none" inherits cuDNN's, then the global one (IEEE at the top); the legacy
    ``allow_tf32`` switch (which writes the per-op settings) still decides. Every setting is restored after."""
    from pixelcnn.ops import triton_masked_conv as tmc
    from pixelcnn.ops.precision import conv_precision, legacy_flag_readable

    cudnn = torch.backends.cudnn
    if not hasattr(getattr(cudnn, "conv", None), "fp32_precision"):
        pytest.skip("torch < 2.9: only allow_tf32 exists (covered above)")
    levels = (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision, cudnn.fp32_precision, torch.backends.fp32_precision)
    try:
        with conv_precision("tf32"):
            cudnn.allow_tf32 = False
            assert tmc.fp32_precision() == "ieee"
            cudnn.allow_tf32 = True
            assert tmc.fp32_precision() == "tf32"
            cudnn.conv.fp32_precision = "none"
            cudnn.fp32_precision = "none"
            torch.backends.fp32_precision = "none"
            assert tmc.fp32_precision() == "ieee"
            torch.backends.fp32_precision = "tf32"
            assert tmc.fp32_precision() == "tf32"
            cudnn.fp32_precision = "ieee"
            assert tmc.fp32_precision() == "ieee"
    finally:
        cudnn.fp32_precision, torch.backends.fp32_precision = levels[2:]
    assert (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision) == levels[:2]
    assert (cudnn.fp32_precision, torch.backends.fp32_precision) == levels[2:]
    assert legacy_flag_readable()


@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
def test_model_with_triton_op_compiles_fullgraph_without_graph_breaks(arch):
    from pixelcnn.likelihood import nll_nats
    from tests.helpers import random_model

    model = random_model(
        channels=3,
        num_classes=4,
        hidden=6,
        blocks=1,
        kernel_size=3,
        size=(4, 5),
        dtype=torch.float32,
        std=0.2,
        arch=arch,
    ).to(DEVICE)
    first = model.masked_convs()[0]  # the image layer (gated: the vertical stack's)
    image = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8, device=DEVICE)
    labels = torch.tensor([1, 3], device=DEVICE)
    want = model(image, labels)
    model.set_conv_impl("triton")
    explained = torch._dynamo.explain(model)(image, labels)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    got = compiled(image, labels)
    tol = 1e-2 if CUDA else 1e-4  # TF32 on a GPU
    assert float((got - want).abs().max().detach()) <= tol * float(want.abs().max().detach())
    nll_nats(compiled(image, labels), image).backward()
    g_triton = first.weight.grad.clone()
    model.zero_grad()
    model.set_conv_impl("reference")
    nll_nats(model(image, labels), image).backward()
    g_ref = first.weight.grad
    assert float((g_triton - g_ref).abs().max()) <= tol * float(g_ref.abs().max())


# --- GPU only: seed-like shapes, every precision setting ------------------------------------------------------------
GPU_CASES = [
    (8, 3, 64, 32, 32, 7, "A", 3, True, True, False, False),
    (8, 1, 64, 28, 28, 7, "A", 1, True, True, False, False),
    (8, 64, 64, 32, 32, 3, "B", 3, True, True, False, True),
    (4, 256, 256, 16, 16, 3, "B", 3, True, True, True, True),
    (4, 128, 256, 16, 16, 1, "B", 3, True, False, True, False),
]


@gpu
@pytest.mark.parametrize("tf32", [True, False], ids=["tf32", "ieee"])
@pytest.mark.parametrize("case", GPU_CASES, ids=case_id)
def test_gpu_fp32_within_bound_of_float64_reference(case, tf32):
    from pixelcnn.ops.precision import conv_precision

    *shape, bias, cond, residual, relu = case
    with conv_precision("tf32" if tf32 else "ieee"):
        check_against_ref64(make_inputs(*shape, bias, cond, residual), relu)


@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("case", GPU_CASES, ids=case_id)
def test_gpu_half_within_bound_of_float64_reference(case, dtype):
    *shape, bias, cond, residual, relu = case
    check_against_ref64(make_inputs(*shape, bias, cond, residual, dtype=dtype), relu)


@gpu
def test_gpu_autotuned_channels_last_model_step_matches_reference():
    """A whole model's forward and backward through the autotuned kernels, against the reference conv."""
    from pixelcnn.likelihood import nll_nats
    from tests.helpers import random_model

    model = random_model(
        channels=3, num_classes=4, hidden=32, blocks=2, kernel_size=3, size=(16, 16), dtype=torch.float64, std=0.05
    ).cuda()
    image = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, device="cuda")
    labels = torch.tensor([0, 1, 2, 3], device="cuda")
    ref = model(image, labels)
    model.float().set_conv_impl("triton")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = model(image, labels)
    assert got.dtype == torch.bfloat16
    assert float((got.double() - ref).abs().max()) <= 0.05 * float(ref.abs().max())
    nll_nats(got.float(), image).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
