"""The draw rule of the sampling contract (docs/DESIGN.md §5), mirrored operation for operation from csrc/draw.h.

``draw_values(logits [N, 256], u [N], temperature) -> int64 [N]``: in double precision, ``s = logits / T``,
``e = exp_rn(s - max s)``; the 256 levels form 32 chunks of 8 whose cumulative sums run left to right inside a
chunk, chunk offsets are the left-to-right sum of the chunk totals before it, ``cdf = offset + local``; the value is
the number of levels whose cdf is <= ``u * cdf[255]`` (at most 255). Only +, *, /, floor and a power of two are
used, so the C++ op, the CUDA kernels and this function give the same bits.

It runs on the CPU whatever the logits' device (a GPU's parallel cumsum would sum in another order).
"""

from __future__ import annotations

import torch

LEVELS = 256
CHUNKS, CHUNK = 32, 8
LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
EXP_MIN = -708.0
# 1/n! for n = 11 .. 2, then 1, 1: the Horner coefficients of exp_rn (each a correctly rounded double, as in C)
_HORNER = [
    1.0 / 39916800.0,
    1.0 / 3628800.0,
    1.0 / 362880.0,
    1.0 / 40320.0,
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
]


# 2^-n for n = 0 .. 1021, exact: exp_rn's power of two by table look-up (k = floor(x log2 e + 0.5) >= -1021 for
# x >= -708), so the rule uses only ops every graph runtime has (no bit casts)
_POW2 = torch.tensor([2.0**-n for n in range(1022)], dtype=torch.float64)


def exp_rn(x: torch.Tensor) -> torch.Tensor:
    """csrc/draw.h ``exp_rn`` for a float64 tensor of values <= 0 (each torch op is one IEEE operation)."""
    keep = x >= EXP_MIN
    x = torch.where(keep, x, torch.zeros_like(x))
    k = torch.floor(x * LOG2E + 0.5)
    r = (x - k * LN2_HI) - k * LN2_LO
    p = torch.full_like(r, _HORNER[0])
    for c in _HORNER[1:]:
        p = p * r + c
    two_k = _POW2.to(x.device)[(-k).to(torch.int64)]  # 2^k exactly
    return torch.where(keep, p * two_k, torch.zeros_like(p))


def draw_rule(logits: torch.Tensor, u: torch.Tensor, temperature) -> torch.Tensor:
    """The rule on float64 tensors: logits ``[N, 256]``, u ``[N]``, ``temperature`` a float or a 0-d float64
    tensor -> int64 ``[N]``. Tensor ops only and no data-dependent control flow, so the ONNX sampler model is
    exported from this function (cumsum is a sequential scan in PyTorch and ONNX Runtime alike)."""
    s = logits / temperature
    e = exp_rn(s - s.amax(dim=-1, keepdim=True))
    local = e.reshape(-1, CHUNKS, CHUNK).cumsum(dim=-1)  # sequential inside each chunk of 8
    running = local[:, :, CHUNK - 1].cumsum(dim=-1)  # ((t_0 + t_1) + ...) + t_c
    offset = torch.cat([torch.zeros_like(running[:, :1]), running[:, : CHUNKS - 1]], dim=1)
    target = u * running[:, CHUNKS - 1]
    below = (offset.unsqueeze(2) + local) <= target.reshape(-1, 1, 1)
    return below.sum(dim=(1, 2)).clamp(max=LEVELS - 1)


def draw_values(logits: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inverse-CDF draw of one sub-pixel per row: logits ``[N, 256]``, u ``[N]`` -> int64 ``[N]`` in 0..255."""
    device = logits.device
    s = logits.detach().to("cpu", torch.float64)
    return draw_rule(s, u.detach().to("cpu", torch.float64), float(temperature)).to(device)
