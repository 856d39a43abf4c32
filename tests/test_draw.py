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
