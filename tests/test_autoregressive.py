"""Autoregressive property by gradients (docs/DESIGN.md §3): the gradient of the output at sub-pixel p with respect to
input sub-pixels at or after p is exactly 0 — and the earlier ones do influence it (so the test can fail)."""

import pytest
import torch

from pixelcnn.model import MaskedConv2d
from pixelcnn.pixels import to_unit
from tests.helpers import random_model


def order(c, i, j, channels, width):
    """Position of sub-pixel (c, i, j) in the raster-then-colour generation order."""
    return (i * width + j) * channels + c


def input_gradient(f, x, c, i, j):
    x = x.clone().requires_grad_(True)
    out = f(x)
    out[c, i, j].backward()  # f returns [C, H, W] of the first image
    return x.grad[0]


@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("k0", [3, 7])
@pytest.mark.parametrize("with_labels", [True, False])
def test_model_logits_ignore_current_and_future_subpixels(arch, channels, k0, with_labels):
    h, w = 5, 6
    model = random_model(channels=channels, num_classes=4 if with_labels else 0, kernel_size=k0, size=(h, w), arch=arch)
    labels = torch.tensor([2]) if with_labels else None
    x = torch.rand(1, channels, h, w, dtype=torch.float64) * 255
    logits_of = lambda inp: model.logits(to_unit(inp, inp.dtype), labels)[0, 17]  # one of the 256 values
    seeing = later = 0
    for i in range(h):
        for j in range(w):
            for c in range(channels):
                g = input_gradient(logits_of, x, c, i, j)
                p = order(c, i, j, channels, w)
                for cc in range(channels):
                    for ii in range(h):
                        for jj in range(w):
                            q = order(cc, ii, jj, channels, w)
                            if q >= p:
                                assert g[cc, ii, jj] == 0, f"logit {(c, i, j)} sees input {(cc, ii, jj)}"
                if p >= channels:  # some earlier input exists (a dead ReLU may hide it at a few positions)
                    later += 1
                    seeing += bool(g.abs().sum() > 0)
    assert seeing >= 0.8 * later, f"only {seeing} of {later} logits depend on any earlier input"


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("k", [3, 7])
def test_single_masked_conv_sees_only_allowed_inputs(mask_type, channels, k):
    torch.manual_seed(0)
    conv = MaskedConv2d(channels * 2, channels * 2, k, mask_type, channels).double()
    with torch.no_grad():
        conv.weight.normal_()
    h, w = 6, 6
    x = torch.randn(1, channels * 2, h, w, dtype=torch.float64)
    for o in range(channels * 2):
        i, j = 3, 2
        g = input_gradient(lambda inp: conv(inp)[0], x, o, i, j)
        go = o % channels
        for ci in range(channels * 2):
            gi = ci % channels
            for ii in range(h):
                for jj in range(w):
                    before = ii < i or (ii == i and jj < j)
                    here = ii == i and jj == j
                    allowed = before or (here and (gi < go if mask_type == "A" else gi <= go))
                    if allowed and abs(ii - i) <= k // 2 and abs(jj - j) <= k // 2:
                        assert g[ci, ii, jj] != 0, (o, ci, ii, jj)
                    elif not allowed:
                        assert g[ci, ii, jj] == 0, (o, ci, ii, jj)


def test_gated_has_no_blind_spot_while_pixelcnn_does():
    """Under ``gated`` every sub-pixel before p reaches the logits at p; under ``pixelcnn`` the pixels up and to the
    right of p beyond the stack's reach (its blind spot) have exactly zero gradient, however many layers."""
    h, w, channels = 6, 7, 3
    x = torch.rand(1, channels, h, w, dtype=torch.float64) * 255
    i, j, c = 4, 1, 2  # a target with many pixels above and to its right
    p = order(c, i, j, channels, w)
    earlier = torch.tensor(
        [[[order(cc, ii, jj, channels, w) < p for jj in range(w)] for ii in range(h)] for cc in range(channels)]
    )
    grads = {}
    for arch in ("pixelcnn", "gated"):
        model = random_model(
            channels=channels, num_classes=0, hidden=6, blocks=6, kernel_size=3, size=(h, w), arch=arch
        )
        grads[arch] = input_gradient(lambda inp, m=model: m.logits(to_unit(inp, inp.dtype), None)[0, 17], x, c, i, j)
    assert torch.all(grads["gated"][earlier] != 0), "gated: some earlier sub-pixel does not reach the logits"
    # pixelcnn's blind spot: each 3x3 layer reaches one row up and one column right at most, so from (i, j) the
    # pixels d rows up and more than d columns right stay unseen however deep the stack: (0, 6), (1, 5), (1, 6),
    # (2, 4..6), (3, 3..6) here
    blind = [(ii, jj) for ii in range(i) for jj in range(w) if jj - j > i - ii]
    assert len(blind) == 10
    for ii, jj in blind:
        assert torch.all(grads["pixelcnn"][:, ii, jj] == 0), f"pixelcnn sees ({ii}, {jj})"
        assert torch.all(grads["gated"][:, ii, jj] != 0)
    assert int((grads["pixelcnn"][earlier] == 0).sum()) == len(blind) * channels  # the rest it does see
