"""The draw rule (csrc/draw.h) and its Python mirror (pixelcnn/draw.py) give the same value for every row."""

import pytest
import torch

from pixelcnn.draw import draw_values, exp_rn
from pixelcnn.extension import load_extension


def test_exp_rn_is_within_a_few_ulp_of_exp():
    x = -torch.rand(100_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 700
    rel = ((exp_rn(x) - torch.exp(x)).abs() / torch.exp(x)).max()
    assert rel < 1e-14
    assert exp_rn(torch.tensor([-800.0, float("-inf")], dtype=torch.float64)).tolist() == [0.0, 0.0]


def test_draw_picks_smallest_value_whose_cdf_exceeds_u():
    logits = torch.full((1, 256), -1e4, dtype=torch.float64)
    logits[0, :3] = torch.log(torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))
    picks = [int(draw_values(logits, torch.tensor([u]), 1.0)) for u in (0.0, 0.2, 0.3, 0.6, 0.99999)]
    assert picks == [0, 0, 1, 2, 2]


@pytest.mark.parametrize(
    "dtype,scale", [(torch.float64, 5.0), (torch.float32, 3.0), (torch.float64, 300.0), (torch.float64, 1e-3)]
)
@pytest.mark.parametrize("temperature", [0.6, 1.0, 1.7])
def test_cpp_draw_equals_python_mirror_bit_for_bit(dtype, scale, temperature):
    if load_extension() is None:
        pytest.skip("pixelcnn._C is not built")
    g = torch.Generator().manual_seed(int(scale * 10) + int(temperature * 10))
    logits = (torch.randn(5000, 256, generator=g, dtype=torch.float64) * scale).to(dtype)
    u = torch.rand(5000, generator=g)
    u[:3] = torch.tensor([0.0, 0.5, 1.0 - 2**-24])
    assert torch.equal(torch.ops.pixelcnn.draw(logits, u, temperature), draw_values(logits, u, temperature))


def test_cpp_draw_equals_python_mirror_at_the_edges():
    # exp_rn's cut-off at -708 and its rounding of k (s - max near (k - 1/2) ln 2), infinite logits and rows that are
    # all -inf: the C++ op computes these without branches (csrc/draw.h) and must still match the mirror
    if load_extension() is None:
        pytest.skip("pixelcnn._C is not built")
    g = torch.Generator().manual_seed(3)
    logits = -torch.rand(64, 256, generator=g, dtype=torch.float64) * 720
    logits[:, 0] = 0.0
    logits[:8, 1:9] = torch.tensor([-708.0, -707.9999999999999, -708.0000000000001, -709.0, -1e300, -0.0, -1e-300, 0.0])
    k = torch.arange(1, 249, dtype=torch.float64)
    logits[8:16, 8:] = -(k - 0.5) * 0.6931471805599453 + torch.randint(-3, 4, (8, 248), generator=g) * 2**-40
    logits[16:20, 5] = float("inf")
    logits[20:24, 7] = float("-inf")
    logits[24] = float("-inf")
    u = torch.rand(64, generator=g)
    for temperature in (1.0, 0.37):
        assert torch.equal(torch.ops.pixelcnn.draw(logits, u, temperature), draw_values(logits, u, temperature))
        assert torch.equal(
            torch.ops.pixelcnn.draw(logits.float(), u, temperature), draw_values(logits.float(), u, temperature)
        )
