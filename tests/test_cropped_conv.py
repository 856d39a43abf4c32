"""The default conv path (the kernel cropped to its mask's live rectangle: (k//2+1) x k for the seed's masks and the
gated vertical stack's vB, k//2 x k for vA, 1 x (k//2+1) for the horizontal stack) against F.conv2d on the full W*M,
and the model on it (channels-last on CPU) against the model on the full reference conv, on both architectures."""

import pytest
import torch

import pixelcnn.ops.masked_conv as masked_conv
import pixelcnn.ops.reference as reference
from pixelcnn.masks import MASK_TYPES, conv_mask, live_taps
from pixelcnn.ops.reference import masked_conv2d_cropped, masked_conv2d_reference
from tests.helpers import random_model


def inputs(cin, cout, k, mask_type, colors, dtype, layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, cin, 7, 6, generator=g, dtype=dtype).contiguous(memory_format=layout)
    w = torch.randn(cout, cin, k, k, generator=g, dtype=dtype)
    mask = conv_mask(cout, cin, k, mask_type, colors, gated_out=mask_type[0] in "vh").to(dtype)
    bias, cond = torch.randn(cout, generator=g, dtype=dtype), torch.randn(2, cout, generator=g, dtype=dtype)
    res = torch.randn(2, cout, 7, 6, generator=g, dtype=dtype)
    return x, w, mask, bias, cond, res


@pytest.mark.parametrize(
    "k,mask_type,colors,cin",
    [
        (7, "A", 1, 1),
        (7, "A", 3, 3),
        (5, "B", 3, 9),
        (3, "B", 1, 8),
        (3, "B", 1, 5),
        (1, "B", 3, 6),
        (7, "vA", 3, 3),
        (7, "vA", 1, 1),
        (3, "vB", 1, 8),
        (7, "hA", 1, 1),
        (7, "hA", 3, 3),
        (3, "hB", 3, 9),
        (5, "hB", 1, 8),
    ],
)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_cropped_conv_matches_full_reference(k, mask_type, colors, cin, layout):
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        x, w, mask, bias, cond, res = inputs(cin, 6, k, mask_type, colors, dtype, layout)
        for extra in ({}, {"cond": cond, "relu": True}, {"residual": res}):
            want = masked_conv2d_reference(x, w, mask, bias, **extra)
            got = masked_conv2d_cropped(x, w, mask, bias, **extra)
            assert got.shape == want.shape
            rel = float((got - want).abs().max() / want.abs().max())
            assert rel <= tol, (dtype, extra, rel)


@pytest.mark.parametrize("mask_type", MASK_TYPES)
@pytest.mark.parametrize("colors", [1, 3])
def test_cropped_conv_convolves_the_live_rectangle_only(mask_type, colors, monkeypatch):
    # the FLOPs the crop saves: the kernel F.conv2d runs is the mask's live rectangle, nothing more
    k, p = 5, 2
    want_rows = {"A": p + 1, "B": p + 1, "vA": p, "vB": p + 1, "hA": 1, "hB": 1}[mask_type]
    want_cols = {"hA": p + (colors > 1), "hB": p + 1}.get(mask_type, k)
    shapes, conv2d = [], reference.F.conv2d
    monkeypatch.setattr(
        reference.F, "conv2d", lambda x, w, *a, **kw: shapes.append(w.shape[-2:]) or conv2d(x, w, *a, **kw)
    )
    x, w, mask, bias, _, _ = inputs(6, 6, k, mask_type, colors, torch.float64, torch.channels_last)
    masked_conv2d_cropped(x, w, mask, bias)
    assert shapes == [(want_rows, want_cols)]
    live = live_taps(mask)
    g = torch.randn(2, 6, 7, 6, dtype=torch.float64)
    reference.cropped_conv2d_grad_input(g, w, mask, live)
    assert shapes[-1] == (want_rows, want_cols)


def backward_path(out: torch.Tensor) -> set:
    """Names of the autograd nodes behind ``out``. The nodes are kept alive while walking: their Python wrappers are
    made on access, so a freed wrapper's id() can come back for another node (it did on torch 2.11, hiding one)."""
    seen, todo = {}, [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = node
            todo.extend(f for f, _ in node.next_functions)
    return {node.name() for node in seen.values()}


# the default path (masked_conv2d, impl "reference"): from 16 input channels its CPU backward is the grad ops' GEMMs
# (pixelcnn.ops.reference.cropped_conv2d_grad_*), with fewer channels autograd of F.conv2d (oneDNN)
@pytest.mark.parametrize(
    "k,mask_type,colors,cin",
    [
        (5, "B", 3, 5),
        (5, "B", 3, 24),
        (3, "B", 1, 16),
        (7, "A", 3, 18),
        (3, "B", 3, 33),
        # the gated stacks' masks: the vertical one keeps the centre row's right-hand taps, the horizontal one only
        # the centre row
        (3, "vB", 3, 20),
        (5, "vA", 1, 16),
        (3, "hB", 3, 18),
        (5, "hB", 1, 16),
        (5, "hA", 1, 16),
        (3, "hA", 3, 16),
    ],
)
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("rows", [4096, 7])  # 7: products batched over chunks of rows, plus a remainder
def test_cropped_conv_gradients_match_full_reference(k, mask_type, colors, cin, layout, rows, monkeypatch):
    monkeypatch.setattr(reference, "_GEMM_ROWS", rows)
    x, w, mask, bias, cond, res = inputs(cin, 6, k, mask_type, colors, torch.float64, layout)
    for need_x in (True, False):  # False: the image layer, whose input needs no gradient
        grads = []
        for fn in (masked_conv2d_reference, masked_conv.masked_conv2d):
            leaves = [t.clone().requires_grad_(need_x or i > 0) for i, t in enumerate((x, w, bias, cond, res))]
            out = fn(leaves[0], leaves[1], mask, leaves[2], leaves[3], leaves[4], True)
            out.square().sum().backward()
            grads.append([t.grad for t in leaves])
        assert ("_CroppedConvCPUBackward" in backward_path(out)) == (cin >= masked_conv._GEMM_MIN_CHANNELS)
        for want, got in zip(*grads, strict=True):
            assert (got is None) == (want is None)
            assert got is None or float((got - want).abs().max()) <= 1e-10
        assert torch.all(grads[1][1][:, :, k // 2 + 1 :] == 0)  # the rows the crop drops get exactly zero gradient
        assert torch.all(grads[1][1][mask == 0] == 0)


def test_cropped_conv_gemm_backward_float32_and_no_bias():
    x, w, mask, _, _, _ = inputs(20, 7, 3, "B", 1, torch.float32, torch.channels_last)
    grads = []
    for fn in (masked_conv2d_reference, masked_conv.masked_conv2d):
        leaves = [t.clone().requires_grad_() for t in (x, w)]
        fn(leaves[0], leaves[1], mask, None).square().sum().backward()
        grads.append([t.grad for t in leaves])
    for want, got in zip(*grads, strict=True):
        assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())


@pytest.mark.parametrize("cin", [3, 8, 16])
@pytest.mark.parametrize("mask_type", ["B", "vA", "vB", "hB"])
def test_cropped_conv_traced_form_matches_full_reference(cin, mask_type):
    # under torch.compile / torch.export the cropped conv takes its other form (symmetric padding, then a slice);
    # from 16 channels the default path's backward is the grad ops, opaque to the compiler
    torch._dynamo.reset()
    x, w, mask, bias, cond, res = inputs(cin, 6, 5, mask_type, 3, torch.float64, torch.channels_last)
    grads = []
    live = live_taps(mask)  # as MaskedConv2d passes it: a compiled graph cannot read the mask's values
    compiled = torch.compile(masked_conv.masked_conv2d, backend="aot_eager", fullgraph=True)
    for fn in (masked_conv2d_reference, lambda *args: compiled(*args, live=live)):
        leaves = [t.clone().requires_grad_() for t in (x, w, bias, cond, res)]
        out = fn(leaves[0], leaves[1], mask, leaves[2], leaves[3], leaves[4], True)
        out.square().sum().backward()
        grads.append([out.detach()] + [t.grad for t in leaves])
    for want, got in zip(*grads, strict=True):
        assert float((got - want).abs().max()) <= 1e-10


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
def test_model_on_cropped_path_matches_model_on_full_reference(channels, arch, monkeypatch):
    # float32: oneDNN (which keeps channels-last) does not take float64
    model = random_model(
        channels=channels, num_classes=3, hidden=8, blocks=2, kernel_size=7, size=(6, 5), dtype=torch.float32, arch=arch
    )
    image = torch.randint(0, 256, (3, channels, 6, 5), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2])
    calls = []

    def counted(*args):
        calls.append(args[0].shape[1] == 1 or args[0].is_contiguous(memory_format=torch.channels_last))
        return masked_conv2d_cropped(*args)

    monkeypatch.setattr(masked_conv, "masked_conv2d_cropped", counted)
    with torch.no_grad():
        got = model(image, labels)
        assert len(calls) == len(model.masked_convs()) and all(calls)  # the default path, channels-last on CPU
        # the full reference takes no live rectangle (the cropped conv's last argument)
        monkeypatch.setattr(masked_conv, "masked_conv2d_cropped", lambda *args: masked_conv2d_reference(*args[:7]))
        want = model(image, labels)
    assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_cropped_gradient_ops_pass_opcheck(layout):
    # schema, fake kernels (shapes and strides) and torch.compile tracing of the CPU backward's two ops
    x, w, mask, _, _, _ = inputs(17, 6, 3, "B", 1, torch.float32, layout)
    grad = torch.randn(2, 6, 7, 6).contiguous(memory_format=layout)
    live = list(live_taps(mask))
    torch.library.opcheck(torch.ops.pixelcnn.cropped_conv2d_grad_input, (grad, w, mask, live))
    torch.library.opcheck(torch.ops.pixelcnn.cropped_conv2d_grad_weight, (grad, x, w, mask, live))


@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
def test_model_on_the_default_path_traces_in_one_graph(arch):
    """--compile on CPU: the live rectangles are ints kept where the masks were built, so no mask is read while
    tracing (a data-dependent read would break the graph)."""
    torch._dynamo.reset()
    model = random_model(channels=1, num_classes=3, hidden=16, blocks=1, kernel_size=5, size=(6, 5), arch=arch)
    model = model.float()
    image = torch.randint(0, 256, (2, 1, 6, 5), dtype=torch.uint8)
    explained = torch._dynamo.explain(model)(image, torch.tensor([0, 2]))
    assert explained.graph_break_count == 0 and explained.graph_count == 1
