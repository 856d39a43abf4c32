"""Fused masked convolution in Triton: kernels, launchers, autotune configs and a reference check, in that order.

Implicit GEMM over output tiles ``[BLOCK_M pixels (n, h, w) x BLOCK_N output channels]``; the reduction runs over
the live taps of the mask only — unrolled at compile time (a 7x7 mask A on grey images: 24 of 49 taps; a 3x3
mask B: 5 of 9) — and over input channels in ``BLOCK_K`` slices with ``tl.dot`` (fp32 accumulation). The
centre tap carries the colour-group mask inside the packed weight ``(W*M)[taps, Cin, Cout]``. Epilogue: bias,
class vector, residual, ReLU. Strides are arguments, so NCHW and channels-last tensors both work.

Backward: grad_input is the same kernel over the flipped taps with the transposed packed weight; grad_weight is a
per-tap GEMM reduced over all pixels; both are Triton kernels. Bias / class-vector / residual gradients are
plain reductions of the pre-activation gradient.
"""
from __future__ import annotations

import os
from typing import Optional

import torch
import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def _dot_fp32(dtype: torch.dtype) -> bool:
    # Triton 3.8's interpreter computes tl.dot on bfloat16 operands wrongly (numpy has no bfloat16); upcasting
    # the tiles there keeps the CPU tests meaningful. Compiled kernels use the native bf16 tensor-core dot.
    return INTERPRET and dtype == torch.bfloat16


@triton.jit
def _conv_fwd_kernel(x_ptr, w_ptr, bias_ptr, cond_ptr, res_ptr, out_ptr,
                     N, H, W, CIN, COUT,
                     sxn, sxc, sxh, sxw, swt, swk, swn, son, soc, soh, sow, srn, src, srh, srw, scn, scc,
                     KSIZE: tl.constexpr, CENTRE: tl.constexpr, FLIP: tl.constexpr,
                     HAS_BIAS: tl.constexpr, HAS_COND: tl.constexpr, HAS_RES: tl.constexpr, RELU: tl.constexpr,
                     DOT_FP32: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    P: tl.constexpr = KSIZE // 2
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < N * H * W
    img = offs_m // (H * W)
    hw = offs_m % (H * W)
    oh = hw // W
    ow = hw % W
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < COUT
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for ky in tl.static_range(P + 1):
        for kx in tl.static_range(KSIZE):
            if ky < P or kx < P or (kx == P and CENTRE):
                tap = ky * KSIZE + kx  # live taps are numbered in raster order: rows above, then the centre row
                if FLIP:  # grad_input: out[p] += g[p - d] * W[d]^T
                    ih = oh - (ky - P)
                    iw = ow - (kx - P)
                else:
                    ih = oh + (ky - P)
                    iw = ow + (kx - P)
                valid = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                x_row = x_ptr + img * sxn + ih * sxh + iw * sxw
                for k0 in range(0, CIN, BLOCK_K):
                    offs_k = k0 + tl.arange(0, BLOCK_K)
                    mask_k = offs_k < CIN
                    a = tl.load(x_row[:, None] + offs_k[None, :] * sxc, mask=valid[:, None] & mask_k[None, :],
                                other=0.0)
                    b = tl.load(w_ptr + tap * swt + offs_k[:, None] * swk + offs_n[None, :] * swn,
                                mask=mask_k[:, None] & mask_n[None, :], other=0.0)
                    if DOT_FP32:
                        a = a.to(tl.float32)
                        b = b.to(tl.float32)
                    acc += tl.dot(a, b, input_precision="ieee")
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    out_mask = mask_m[:, None] & mask_n[None, :]
    if HAS_COND:
        acc += tl.load(cond_ptr + img[:, None] * scn + offs_n[None, :] * scc, mask=out_mask, other=0.0).to(tl.float32)
    if HAS_RES:
        acc += tl.load(res_ptr + img[:, None] * srn + offs_n[None, :] * src + oh[:, None] * srh + ow[:, None] * srw,
                       mask=out_mask, other=0.0).to(tl.float32)
    if RELU:
        acc = tl.maximum(acc, 0.0)
    out = out_ptr + img[:, None] * son + offs_n[None, :] * soc + oh[:, None] * soh + ow[:, None] * sow
    tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _conv_wgrad_kernel(x_ptr, g_ptr, dw_ptr, N, H, W, CIN, COUT,
                       sxn, sxc, sxh, sxw, sgn, sgc, sgh, sgw, sdt, sdk, sdn,
                       KSIZE: tl.constexpr, DOT_FP32: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """dW[tap, ci, co] = sum over pixels of x[n, ci, p + d_tap] * g[n, co, p]; grid (taps * Cin tiles, Cout tiles)."""
    P: tl.constexpr = KSIZE // 2
    k_tiles = tl.cdiv(CIN, BLOCK_K)
    tap = tl.program_id(0) // k_tiles
    dy = tap // KSIZE - P  # live tap index -> offset (raster order over the live region)
    dx = tap % KSIZE - P
    offs_k = (tl.program_id(0) % k_tiles) * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_k = offs_k < CIN
    mask_n = offs_n < COUT
    acc = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
    for m0 in range(0, N * H * W, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < N * H * W
        img = offs_m // (H * W)
        hw = offs_m % (H * W)
        oh = hw // W
        ow = hw % W
        ih = oh + dy
        iw = ow + dx
        valid = mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        xt = tl.load(x_ptr + offs_k[:, None] * sxc + (img * sxn + ih * sxh + iw * sxw)[None, :],
                     mask=mask_k[:, None] & valid[None, :], other=0.0)
        g = tl.load(g_ptr + (img * sgn + oh * sgh + ow * sgw)[:, None] + offs_n[None, :] * sgc,
                    mask=mask_m[:, None] & mask_n[None, :], other=0.0)
        if DOT_FP32:
            xt = xt.to(tl.float32)
            g = g.to(tl.float32)
        acc += tl.dot(xt, g, input_precision="ieee")
    tl.store(dw_ptr + tap * sdt + offs_k[:, None] * sdk + offs_n[None, :] * sdn, acc,
             mask=mask_k[:, None] & mask_n[None, :])


# --- autotuning ------------------------------------------------------------------------------------------------
def _configs():
    """Block shapes for the seed's GPU shapes (batch 128, 32x32, h=256: M = 131072 pixels, Cin/Cout 256-512)."""
    out = []
    for bm, bn, bk, warps, stages in [(128, 128, 32, 4, 3), (128, 64, 32, 4, 4), (64, 128, 32, 4, 4),
                                      (128, 128, 64, 8, 3), (64, 64, 64, 4, 3), (128, 256, 32, 8, 3),
                                      (64, 32, 32, 2, 4), (32, 32, 16, 2, 2)]:
        out.append(triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=warps, num_stages=stages))
    return out


CONFIGS = _configs()
# the interpreter runs every config of an autotuner: use one small tile there instead
INTERPRETER_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16}

_conv_fwd_tuned = triton.autotune(CONFIGS, key=["CIN", "COUT", "KSIZE", "CENTRE", "FLIP", "H", "W", "DOT_FP32"])(_conv_fwd_kernel)
_conv_wgrad_tuned = triton.autotune(CONFIGS, key=["CIN", "COUT", "KSIZE", "H", "W"],
                                    reset_to_zero=["dw_ptr"])(_conv_wgrad_kernel)


# --- launchers -------------------------------------------------------------------------------------------------
_centre_cache: dict = {}


def centre_is_live(mask: torch.Tensor) -> bool:
    """Whether any centre-tap connection survives the mask (False only for mask A on one colour). Cached per
    mask buffer so a GPU mask costs one device->host copy, not one per call."""
    key = (mask.data_ptr(), mask.device, tuple(mask.shape), mask._version)
    if key not in _centre_cache:
        p = mask.shape[-1] // 2
        _centre_cache[key] = bool(mask[:, :, p, p].any())
    return _centre_cache[key]


def pack_live_taps(weight: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(W*M) ``[Cout, Cin, k, k]`` -> ``[k*k, Cin, Cout]`` indexed by ``ky*k + kx`` (dead taps are never read)."""
    cout, cin, k, _ = weight.shape
    return (weight * mask).permute(2, 3, 1, 0).reshape(k * k, cin, cout).contiguous()


def _launch_conv(x, wpk, cout, ksize, centre, flip, bias, cond, residual, relu, out_dtype, config=None):
    n, cin, h, w = x.shape
    out = torch.empty((n, cout, h, w), device=x.device, dtype=out_dtype)
    dummy = out
    rs = residual.stride() if residual is not None else (0, 0, 0, 0)
    cs = cond.stride() if cond is not None else (0, 0)
    args = (x, wpk, bias if bias is not None else dummy, cond if cond is not None else dummy,
            residual if residual is not None else dummy, out, n, h, w, cin, cout, *x.stride(), *wpk.stride(),
            *out.stride(), *rs, *cs)
    flags = dict(KSIZE=ksize, CENTRE=centre, FLIP=flip, HAS_BIAS=bias is not None, HAS_COND=cond is not None,
                 HAS_RES=residual is not None, RELU=relu, DOT_FP32=_dot_fp32(x.dtype))
    m = n * h * w
    if config is None and INTERPRET:
        config = INTERPRETER_CONFIG
    if config is None:
        grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(cout, meta["BLOCK_N"]))
        _conv_fwd_tuned[grid](*args, **flags)
    else:
        grid = (triton.cdiv(m, config["BLOCK_M"]), triton.cdiv(cout, config["BLOCK_N"]))
        _conv_fwd_kernel[grid](*args, **flags, **{k: config[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K")},
                               **({"num_warps": config["num_warps"]} if "num_warps" in config else {}))
    return out


def masked_conv2d_forward(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, bias: Optional[torch.Tensor],
                          cond: Optional[torch.Tensor], residual: Optional[torch.Tensor], relu: bool,
                          config: Optional[dict] = None) -> torch.Tensor:
    """``act(conv(x, W*M) + bias + cond + residual)`` with the Triton kernel; shapes as in ``masked_conv.py``."""
    k = weight.shape[-1]
    wpk = pack_live_taps(weight, mask).to(x.dtype)
    return _launch_conv(x, wpk, weight.shape[0], k, centre_is_live(mask), False, bias, cond, residual, relu,
                        x.dtype, config)


def masked_conv2d_backward(grad_pre: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                           config: Optional[dict] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_x, grad_weight) of ``conv(x, W*M)`` given the pre-activation gradient; masked taps get exactly 0."""
    cout, cin, k, _ = weight.shape
    centre = centre_is_live(mask)
    g = grad_pre.to(x.dtype)
    wpk_t = pack_live_taps(weight, mask).to(x.dtype).transpose(1, 2).contiguous()  # [k*k, Cout, Cin]
    gx = _launch_conv(g, wpk_t, cin, k, centre, True, None, None, None, False, x.dtype, config)

    p = k // 2
    live = p * k + p + (1 if centre else 0)  # taps ky*k + kx for ky < p, then the centre row up to the centre
    n, _, h, w = x.shape
    dw = torch.zeros((live, cin, cout), device=x.device, dtype=torch.float32)
    args = (x, g, dw, n, h, w, cin, cout, *x.stride(), *g.stride(), *dw.stride())
    if config is None and INTERPRET:
        config = INTERPRETER_CONFIG
    if config is None:
        grid = lambda meta: (live * triton.cdiv(cin, meta["BLOCK_K"]), triton.cdiv(cout, meta["BLOCK_N"]))
        _conv_wgrad_tuned[grid](*args, KSIZE=k, DOT_FP32=_dot_fp32(x.dtype))
    else:
        grid = (live * triton.cdiv(cin, config["BLOCK_K"]), triton.cdiv(cout, config["BLOCK_N"]))
        _conv_wgrad_kernel[grid](*args, KSIZE=k, DOT_FP32=_dot_fp32(x.dtype), **{key: config[key] for key in ("BLOCK_M", "BLOCK_N", "BLOCK_K")},
                                 **({"num_warps": config["num_warps"]} if "num_warps" in config else {}))
    full = torch.zeros((k * k, cin, cout), device=x.device, dtype=torch.float32)
    full[:live] = dw
    gw = full.view(k, k, cin, cout).permute(3, 2, 0, 1) * mask
    return gx, gw.to(weight.dtype).contiguous()


# --- reference check -------------------------------------------------------------------------------------------
def check_against_reference(n=2, cin=5, cout=7, h=9, w=11, k=5, mask_type="A", colors=3, dtype=torch.float32,
                            device="cpu", config=None) -> float:
    """Max relative error of the kernel's forward against F.conv2d on the masked weight (used by the tests)."""
    from pixelcnn.masks import conv_mask
    from pixelcnn.ops.reference import masked_conv2d_reference
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, cin, h, w, generator=g).to(device, dtype)
    wt = torch.randn(cout, cin, k, k, generator=g).to(device, dtype)
    mask = conv_mask(cout, cin, k, mask_type, colors).to(device, dtype)
    bias = torch.randn(cout, generator=g).to(device, dtype)
    got = masked_conv2d_forward(x, wt, mask, bias, None, None, True, config).float()
    want = masked_conv2d_reference(x.float(), wt.float(), mask.float(), bias.float(), relu=True)
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
