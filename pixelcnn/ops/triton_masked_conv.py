"""Fused masked convolution in Triton: kernels, autotune configs, launchers (docs/DESIGN.md §6).

Implicit GEMM over output tiles ``[BLOCK_M pixels (n, h, w)] x [BLOCK_N output channels]``. Activations are
channels-last, so one tap's slice of ``BLOCK_K`` input channels is one contiguous vector load per pixel. A masked
k x k kernel keeps taps only on a raster prefix of its live rectangle (``pixelcnn.masks.LiveTaps``: the seed's masks,
the rows above the centre then the centre row up to the centre; the gated vertical stack, whole rows; the horizontal
stack, the centre row's left half and centre), so the reduction is ONE software-pipelined loop over the flattened
range (live tap, K-chunk), with no tap outside that prefix ever visited; the rectangle's origin and width are
constexprs. The centre tap's colour-group mask lives in the packed weight
``(W*M)[taps * Cin, Cout]``. When ``Cin`` is below 16 (the first layer: C = 1 or 3) the launcher folds the live
taps into channels on the host (``fold_live_taps``: a channels-last ``[N, taps * C padded to 16, H, W]`` copy of the
small image) and runs a 1x1 GEMM, so a 7x7 mask A on RGB is one K = 80 reduction instead of 25 padded ones.
Epilogue: bias, class vector, residual, ReLU, fp32 accumulation throughout.

Precision follows PyTorch: bf16/fp16 operands go to the tensor cores; fp32 operands use TF32 when PyTorch lets its
convolutions use TF32 (``torch.backends.cudnn``), IEEE fp32 otherwise (the ``PRECISION`` constexpr).

Backward: grad_input is the same kernel over the mirrored taps with the transposed packed weight; grad_weight splits
the pixel range over a third grid axis, each program writing an fp32 partial sum that one ``sum`` reduces (no atomics,
so it is deterministic). Offsets are 32-bit unless a tensor has 2**31 elements or more (the ``I64`` constexpr).
"""

from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from pixelcnn.masks import LiveTaps, live_taps
from pixelcnn.ops.precision import conv_fp32_precision

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
FOLD_BELOW = 16  # input channels below which the live taps fold into channels (the first layer: C = 1 or 3)
INT32_MAX = 2**31 - 1


def seed_live_taps(kernel_size: int) -> LiveTaps:
    """The seed's mask B: rows above the centre and the centre row up to the centre, ``(k//2)*k + k//2 + 1`` taps
    (mask A on several colours too; on one colour its centre tap is empty, one fewer)."""
    p = kernel_size // 2
    return LiveTaps(0, p, 0, kernel_size - 1, p * kernel_size + p + 1)


# the folded first layer: one 1x1 tap over the taps folded into channels
ONE_TAP = LiveTaps(0, 0, 0, 0, 1)


def fp32_precision() -> str:
    """``"tf32"`` when PyTorch's own (cuDNN) convolutions may use TF32 on fp32 inputs, else ``"ieee"``
    (``pixelcnn.ops.precision``: the per-op settings on torch >= 2.9, never the legacy ``allow_tf32`` there)."""
    return conv_fp32_precision()


def dot_precision(x: torch.Tensor) -> str:
    """tl.dot's input precision for operands like ``x``: PyTorch's choice for fp32 on CUDA (its CPU convolutions
    are IEEE); 16-bit operands ignore it."""
    return fp32_precision() if x.dtype == torch.float32 and x.is_cuda else "ieee"


def _upcast(dtype: torch.dtype) -> bool:
    # Triton's interpreter computes tl.dot on bfloat16 operands wrongly (numpy has no bfloat16); upcasting the tiles
    # there keeps the CPU tests meaningful. Compiled kernels use the native 16-bit tensor-core dot.
    return INTERPRET and dtype == torch.bfloat16


@triton.jit
def _conv_kernel(
    x_ptr,
    w_ptr,
    bias_ptr,
    cond_ptr,
    res_ptr,
    out_ptr,
    M,
    H,
    W,
    CIN,
    COUT,
    TAPS,
    sxn,
    sxc,
    sxh,
    sxw,
    son,
    soc,
    soh,
    sow,
    srn,
    src,
    srh,
    srw,
    scn,
    scc,
    KSIZE: tl.constexpr,
    R0: tl.constexpr,
    C0: tl.constexpr,
    RW: tl.constexpr,
    FLIP: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_COND: tl.constexpr,
    HAS_RES: tl.constexpr,
    RELU: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    I64: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """out[p, :] = act(sum over live taps t of x[p + d_t, :] @ Wp[t] + epilogue); FLIP uses p - d_t (grad_input).

    ``w_ptr`` is the packed weight ``[TAPS * CIN, COUT]`` (row ``t * CIN + ci``); tap t is (R0 + t // RW, C0 + t % RW)
    in kernel coordinates (the live rectangle at (R0, C0), RW wide)."""
    P: tl.constexpr = KSIZE // 2
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    if I64:
        offs_m = pid_m.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    else:
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    img = offs_m // (H * W)
    hw = offs_m % (H * W)
    oh = hw // W
    ow = hw % W
    x_rows = x_ptr + img * sxn + oh * sxh + ow * sxw  # pixel p of every row; taps add a scalar offset
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < COUT
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    KCH = tl.cdiv(CIN, BLOCK_K)
    for i in range(0, TAPS * KCH):  # one pipelined loop over (live tap, K-chunk)
        t = i // KCH
        k0 = (i - t * KCH) * BLOCK_K
        dy = R0 + t // RW - P
        dx = C0 + t % RW - P
        if FLIP:
            dy = -dy
            dx = -dx
        ih = oh + dy
        iw = ow + dx
        valid = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < CIN
        a = tl.load(
            x_rows[:, None] + (dy * sxh + dx * sxw) + offs_k[None, :] * sxc,
            mask=valid[:, None] & mask_k[None, :],
            other=0.0,
        )
        b = tl.load(
            w_ptr + (t * CIN + offs_k)[:, None] * COUT + offs_n[None, :],
            mask=mask_k[:, None] & mask_n[None, :],
            other=0.0,
        )
        if UPCAST:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    out_mask = mask_m[:, None] & mask_n[None, :]
    if HAS_COND:
        acc += tl.load(cond_ptr + img[:, None] * scn + offs_n[None, :] * scc, mask=out_mask, other=0.0).to(tl.float32)
    if HAS_RES:
        acc += tl.load(
            res_ptr + img[:, None] * srn + offs_n[None, :] * src + oh[:, None] * srh + ow[:, None] * srw,
            mask=out_mask,
            other=0.0,
        ).to(tl.float32)
    if RELU:
        acc = tl.maximum(acc, 0.0)
    out = out_ptr + img[:, None] * son + offs_n[None, :] * soc + oh[:, None] * soh + ow[:, None] * sow
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _wgrad_kernel(
    x_ptr,
    g_ptr,
    part_ptr,
    M,
    H,
    W,
    CIN,
    COUT,
    TAPS,
    M_PER_SPLIT,
    sxn,
    sxc,
    sxh,
    sxw,
    sgn,
    sgc,
    sgh,
    sgw,
    KSIZE: tl.constexpr,
    R0: tl.constexpr,
    C0: tl.constexpr,
    RW: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
    I64: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """part[s, t * CIN + ci, co] = sum over pixels p of split s of x[p + d_t, ci] * g[p, co]."""
    P: tl.constexpr = KSIZE // 2
    pid_k = tl.program_id(0)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    split = tl.program_id(2)
    mask_n = offs_n < COUT
    if I64:
        split = split.to(tl.int64)
    m_start = split * M_PER_SPLIT
    m_end = tl.minimum(m_start + M_PER_SPLIT, M)
    KCH = tl.cdiv(CIN, BLOCK_K)
    t = pid_k // KCH
    c = (pid_k % KCH) * BLOCK_K + tl.arange(0, BLOCK_K)
    mask_k = c < CIN
    kk = t * CIN + c
    dy = R0 + t // RW - P
    dx = C0 + t % RW - P
    acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    for m0 in range(m_start, m_end, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < m_end
        img = offs_m // (H * W)
        hw = offs_m % (H * W)
        oh = hw // W
        ow = hw % W
        ih = oh + dy
        iw = ow + dx
        valid = mask_k[:, None] & (mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W))[None, :]
        xoff = (img * sxn + ih * sxh + iw * sxw)[None, :] + (c * sxc)[:, None]
        xt = tl.load(x_ptr + xoff, mask=valid, other=0.0)
        g = tl.load(
            g_ptr + (img * sgn + oh * sgh + ow * sgw)[:, None] + offs_n[None, :] * sgc,
            mask=mask_m[:, None] & mask_n[None, :],
            other=0.0,
        )
        if UPCAST:
            xt = xt.to(tl.float32)
            g = g.to(tl.float32)
        acc = tl.dot(xt, g, acc, input_precision=PRECISION)
    base = part_ptr + split * (TAPS * CIN * COUT)
    tl.store(base + kk[:, None] * COUT + offs_n[None, :], acc, mask=mask_k[:, None] & mask_n[None, :])


# --- autotuning ------------------------------------------------------------------------------------------------
# (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages). A 128 x 128 fp32 accumulator takes 8 warps (4 spill in the epilogue;
# 128 x 256 spills even with 8: benchmarks.triton_sass shows it). grad_weight's tile is [BLOCK_K channels x
# BLOCK_N] summed over BLOCK_M pixels at a time: BLOCK_K >= 64 lets sm_90 use wgmma.
CONV_SHAPES = [
    (128, 128, 64, 8, 3),
    (128, 128, 32, 8, 4),
    (128, 64, 64, 4, 3),
    (128, 64, 32, 4, 4),
    (64, 128, 32, 4, 4),
    (64, 64, 32, 4, 3),
    (32, 32, 16, 2, 2),
]
WGRAD_SHAPES = [
    (64, 128, 128, 8, 3),
    (32, 128, 128, 8, 4),
    (64, 128, 64, 4, 3),
    (64, 64, 64, 4, 4),
    (32, 64, 64, 4, 4),
    (64, 128, 32, 4, 3),
    (32, 32, 32, 2, 2),
]


def _configs(shapes):
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
        for bm, bn, bk, w, s in shapes
    ]


CONFIGS = _configs(CONV_SHAPES)
WGRAD_CONFIGS = _configs(WGRAD_SHAPES)
WGMMA_MIN_M = 64  # sm_90 wgmma: 64 output rows per warpgroup
SMEM_BUDGET = 160 * 1024  # under sm_80's 163 KB (sm_90: 227 KB), with room for the epilogue's conversion buffer
# the interpreter would run every config of an autotuner: one small tile there instead
INTERPRETER_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}


def smem_bytes(config: dict, element_size: int, stages: int, wgrad: bool = False) -> int:
    """Shared memory the pipelined operand tiles take per stage: x (BLOCK_M x BLOCK_K) and the weight
    (BLOCK_K x BLOCK_N), or for grad_weight x (BLOCK_K x BLOCK_M) and the gradient (BLOCK_M x BLOCK_N)."""
    c = config
    second = c["BLOCK_M"] * c["BLOCK_N"] if wgrad else c["BLOCK_K"] * c["BLOCK_N"]
    return stages * (c["BLOCK_M"] * c["BLOCK_K"] + second) * element_size


def _pow2_at_least_16(n: int) -> int:
    return max(16, triton.next_power_of_2(max(1, int(n))))


# fp32 accumulator tiles wider than this spill in a residual epilogue (benchmarks.triton_sass, TF32 on sm_90, the gated
# horizontal layers: 128 x 128 and 64 x 128 reach 255 registers and spill 16-48 bytes; 128 x 64 does not)
RESIDUAL_FP32_MAX_BLOCK_N = 64


def prune_configs(configs, m: int, k: int, n: int, element_size: int, wgrad: bool = False, residual: bool = False):
    """Configs whose tiles fit the problem (no block beyond the next power of two of its extent) and whose pipeline
    fits shared memory at this dtype, without the fp32 tiles a residual epilogue spills from; never empty (the
    smallest config stays)."""
    # grad_weight's output rows are BLOCK_K (taps x channels): below 64 rows sm_90 has no wgmma (its M is 64 per
    # warpgroup) and Triton falls back to mma.sync (the folded first layer, 7x7A-C1: 25 rows); rows past k are masked
    k_cap = max(_pow2_at_least_16(k), WGMMA_MIN_M) if wgrad else _pow2_at_least_16(k)
    keep = [
        c
        for c in configs
        if c.kwargs["BLOCK_M"] <= _pow2_at_least_16(m)
        and c.kwargs["BLOCK_N"] <= _pow2_at_least_16(n)
        and c.kwargs["BLOCK_K"] <= k_cap
        and smem_bytes(c.kwargs, element_size, c.num_stages, wgrad) <= SMEM_BUDGET
        and not (residual and element_size == 4 and c.kwargs["BLOCK_N"] > RESIDUAL_FP32_MAX_BLOCK_N)
    ]
    if not keep:
        keep = [min(configs, key=lambda c: smem_bytes(c.kwargs, element_size, c.num_stages, wgrad))]
    return keep


def _prune_conv(configs, named_args, **kwargs):
    a = named_args
    residual = bool(kwargs.get("HAS_RES"))
    return prune_configs(configs, a["M"], a["CIN"], a["COUT"], a["x_ptr"].element_size(), residual=residual)


def _prune_wgrad(configs, named_args, **kwargs):
    a = named_args
    return prune_configs(configs, a["M_PER_SPLIT"], a["CIN"], a["COUT"], a["x_ptr"].element_size(), True)


_KEY = ["CIN", "COUT", "TAPS", "H", "W"]
_conv_tuned = triton.autotune(CONFIGS, key=_KEY + ["HAS_RES"], prune_configs_by={"early_config_prune": _prune_conv})(
    _conv_kernel
)
_wgrad_tuned = triton.autotune(
    WGRAD_CONFIGS, key=_KEY + ["M_PER_SPLIT"], prune_configs_by={"early_config_prune": _prune_wgrad}
)(_wgrad_kernel)


# --- launchers -------------------------------------------------------------------------------------------------
def pack_weight_taps(weight: torch.Tensor, mask: torch.Tensor, live: LiveTaps, transpose: bool = False) -> torch.Tensor:
    """(W*M) ``[Cout, Cin, k, k]`` -> the live taps' weights ``[taps * Cin, Cout]`` (row ``t * Cin + ci``, tap ``t``
    of ``live`` in raster order); ``transpose``: ``[taps * Cout, Cin]``, the weight grad_input multiplies by."""
    cout, cin = weight.shape[:2]
    rows, cols = slice(live.row0, live.row1 + 1), slice(live.col0, live.col1 + 1)
    wm = (weight[:, :, rows, cols] * mask[:, :, rows, cols]).permute(2, 3, 1, 0).reshape(-1, cin, cout)[: live.count]
    if transpose:
        return wm.transpose(1, 2).reshape(live.count * cout, cin).contiguous()
    return wm.reshape(live.count * cin, cout).contiguous()


def folds_taps(cin: int, k: int) -> bool:
    """Whether a layer runs as one GEMM over (live taps x channels): the first layer, C = 1 or 3."""
    return cin < FOLD_BELOW and k > 1


def fold_live_taps(x: torch.Tensor, k: int, live: Optional[LiveTaps] = None) -> torch.Tensor:
    """``[N, C, H, W]`` -> channels-last ``[N, Kp, H, W]``: channel ``t * C + c`` is input channel c shifted by live
    tap t (zero outside the image), then zero channels up to Kp, a multiple of 16 (aligned vector loads). A 1x1
    conv of it with the packed weight is the k x k masked conv. ``live`` defaults to the seed's mask B."""
    n, c, h, w = x.shape
    p, live = k // 2, live or seed_live_taps(k)
    taps = live.count
    kp = triton.cdiv(taps * c, 16) * 16
    xp = F.pad(x, (p, p, p, 0))  # live taps reach rows above and columns either side, never rows below
    cols = [xp[:, :, ky : ky + h, kx : kx + w] for ky, kx in live.offsets()]
    if kp > taps * c:
        cols.append(x.new_zeros((n, kp - taps * c, h, w)))
    out = empty_channels_last((n, kp, h, w), x)
    torch.cat(cols, dim=1, out=out)
    return out


def channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def empty_channels_last(shape, like: torch.Tensor, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """The layout every activation the kernels write has (the fake kernels allocate the same)."""
    return torch.empty(shape, device=like.device, dtype=dtype or like.dtype, memory_format=torch.channels_last)


def _needs_i64(*tensors) -> bool:
    return any(t is not None and t.numel() > INT32_MAX for t in tensors)


def _check_weight_size(numel: int) -> None:
    if numel > INT32_MAX:
        raise ValueError(
            f"packed masked-conv weight has {numel} elements, more than the kernel's 32-bit weight "
            f"offsets allow (2**31 - 1); use fewer channels or impl='reference'"
        )


def _fixed_config(config: Optional[dict]) -> Optional[dict]:
    if config is None and INTERPRET:
        return INTERPRETER_CONFIG
    return config


def _config_launch_args(config: dict) -> dict:
    out = {key: config[key] for key in ("BLOCK_M", "BLOCK_N", "BLOCK_K")}
    for key in ("num_warps", "num_stages"):
        if key in config:
            out[key] = config[key]
    return out


def _launch_conv(x, wpk, cout, ksize, live, flip, bias, cond, residual, relu, config=None):
    """x channels-last ``[N, Cin, H, W]``; ``wpk`` ``[taps * Cin, Cout]`` in x's dtype (the taps of ``live``) ->
    channels-last output."""
    n, cin, h, w = x.shape
    taps = wpk.shape[0] // cin  # the packed weight holds taps * (its input channels) rows
    _check_weight_size(wpk.numel())
    out = empty_channels_last((n, cout, h, w), x)
    dummy = out
    rs = residual.stride() if residual is not None else (0, 0, 0, 0)
    cs = cond.stride() if cond is not None else (0, 0)
    args = (
        x,
        wpk,
        bias if bias is not None else dummy,
        cond if cond is not None else dummy,
        residual if residual is not None else dummy,
        out,
        n * h * w,
        h,
        w,
        cin,
        cout,
        taps,
        *x.stride(),
        *out.stride(),
        *rs,
        *cs,
    )
    flags = dict(
        KSIZE=ksize,
        R0=live.row0,
        C0=live.col0,
        RW=live.cols,
        FLIP=flip,
        HAS_BIAS=bias is not None,
        HAS_COND=cond is not None,
        HAS_RES=residual is not None,
        RELU=relu,
        PRECISION=dot_precision(x),
        UPCAST=_upcast(x.dtype),
        I64=_needs_i64(x, out, residual),
    )
    m = n * h * w
    config = _fixed_config(config)
    if config is None:
        grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(cout, meta["BLOCK_N"]))
        _conv_tuned[grid](*args, **flags)
    else:
        grid = (triton.cdiv(m, config["BLOCK_M"]), triton.cdiv(cout, config["BLOCK_N"]))
        _conv_kernel[grid](*args, **flags, **_config_launch_args(config))
    return out


def masked_conv2d_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    bias: Optional[torch.Tensor],
    cond: Optional[torch.Tensor],
    residual: Optional[torch.Tensor],
    relu: bool,
    live: Optional[LiveTaps] = None,
    config: Optional[dict] = None,
) -> torch.Tensor:
    """``act(conv(x, W*M) + bias + cond + residual)``, channels-last, in x's dtype (shapes as in ``masked_conv``);
    ``live``: the mask's ``LiveTaps`` (read from the mask when not given: a host sync)."""
    cout, cin, k, _ = weight.shape
    live = live or live_taps(mask)
    wpk = pack_weight_taps(weight, mask, live).to(x.dtype)
    if folds_taps(cin, k):
        xf = fold_live_taps(x, k, live)
        wpk = F.pad(wpk, (0, 0, 0, xf.shape[1] - wpk.shape[0]))
        return _launch_conv(xf, wpk, cout, 1, ONE_TAP, False, bias, cond, residual, relu, config)
    return _launch_conv(channels_last(x), wpk, cout, k, live, False, bias, cond, residual, relu, config)


def masked_conv2d_grad_input(
    grad_pre: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    live: Optional[LiveTaps] = None,
    config: Optional[dict] = None,
) -> torch.Tensor:
    """d conv(x, W*M) / dx given the pre-activation gradient ``[N, Cout, H, W]``: channels-last ``[N, Cin, H, W]``."""
    live = live or live_taps(mask)
    wpk_t = pack_weight_taps(weight, mask, live, transpose=True).to(grad_pre.dtype)
    return _launch_conv(
        channels_last(grad_pre), wpk_t, weight.shape[1], weight.shape[-1], live, True, None, None, None, False, config
    )


def sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1


def wgrad_splits(m: int, taps: int, cin: int, cout: int, sms: int) -> tuple[int, int]:
    """(splits, pixels per split) of grad_weight's kernel (``taps`` x ``cin`` rows) on ``sms`` multiprocessors:
    enough programs to fill them (4 per SM at 64 x 64 tiles), at least 512 pixels per split, boundaries on
    multiples of 256 (every BLOCK_M divides them)."""
    tiles = taps * triton.cdiv(cin, 64) * triton.cdiv(cout, 64)
    splits = max(1, min(triton.cdiv(4 * sms, tiles), m // 512))
    per = triton.cdiv(triton.cdiv(m, splits), 256) * 256
    return triton.cdiv(m, per), per


def masked_conv2d_grad_weight(
    grad_pre: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    mask: torch.Tensor,
    live: Optional[LiveTaps] = None,
    config: Optional[dict] = None,
) -> torch.Tensor:
    """d conv(x, W*M) / dW given the pre-activation gradient: ``[Cout, Cin, k, k]`` in W's dtype, 0 on masked taps."""
    cout, cin, k, _ = weight.shape
    live = live or live_taps(mask)
    taps = live.count
    g = channels_last(grad_pre.to(x.dtype))
    if folds_taps(cin, k):  # the first layer: one (taps x Cin) x Cout GEMM over the folded input
        xk, kk, lk = fold_live_taps(x, k, live), 1, ONE_TAP
    else:
        xk, kk, lk = channels_last(x), k, live
    tk = lk.count
    n, ck, h, w = xk.shape
    _check_weight_size(tk * ck * cout)
    splits, per = wgrad_splits(n * h * w, tk, ck, cout, sm_count(x.device))
    part = torch.empty((splits, tk * ck, cout), device=x.device, dtype=torch.float32)
    args = (xk, g, part, n * h * w, h, w, ck, cout, tk, per, *xk.stride(), *g.stride())
    flags = dict(
        KSIZE=kk,
        R0=lk.row0,
        C0=lk.col0,
        RW=lk.cols,
        PRECISION=dot_precision(xk),
        UPCAST=_upcast(x.dtype),
        I64=_needs_i64(xk, g, part),
    )
    grid = lambda meta: (tk * triton.cdiv(ck, meta["BLOCK_K"]), triton.cdiv(cout, meta["BLOCK_N"]), splits)
    config = _fixed_config(config)
    if config is None:
        _wgrad_tuned[grid](*args, **flags)
    else:
        _wgrad_kernel[grid(config)](*args, **flags, **_config_launch_args(config))
    rect = torch.zeros((live.rows * live.cols, cin, cout), device=x.device, dtype=torch.float32)
    rect[:taps] = part.sum(0)[: taps * cin].view(taps, cin, cout)
    full = torch.zeros((k, k, cin, cout), device=x.device, dtype=torch.float32)
    full[live.row0 : live.row1 + 1, live.col0 : live.col1 + 1] = rect.view(live.rows, live.cols, cin, cout)
    return (full.permute(3, 2, 0, 1) * mask).to(weight.dtype).contiguous()
