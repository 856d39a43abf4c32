"""PyTorch's fp32 convolution precision (TF32 or IEEE), read and set one way on every supported torch (2.11 .. 2.14).

torch >= 2.9 has per-op settings (``torch.backends.cudnn.conv.fp32_precision``, ``...rnn...``), ``"none"`` meaning
"as the level above" (conv -> cudnn -> global ``torch.backends.fp32_precision``, IEEE at the top), next to the
legacy boolean ``torch.backends.cudnn.allow_tf32``, which torch itself still reads (torch.export / ONNX export).
That read raises ("cuDNN conv and cuDNN RNN have different TF32 flags") unless conv's and RNN's "is it tf32" both
equal the legacy boolean (measured on 2.11 and 2.14: conv and RNN set to "ieee" by the new API alone is rejected, as
the boolean stays True). So the setter writes the legacy boolean first (which sets conv and RNN to tf32/none) and
then conv and RNN to the explicit value, and ``conv_precision`` restores all three. The reader never reads
``allow_tf32`` on torch >= 2.9. Older torch: ``allow_tf32`` only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS = ("tf32", "ieee")


def _per_op() -> bool:
    """True on torch >= 2.9 (per-op fp32_precision settings)."""
    return hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision")


def _check(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"fp32 convolution precision {precision!r} is not one of {PRECISIONS}; pass 'tf32' or 'ieee'")


def conv_fp32_precision() -> str:
    """``"tf32"`` when PyTorch's own (cuDNN) convolutions may use TF32 on fp32 inputs, else ``"ieee"``."""
    cudnn = torch.backends.cudnn
    if not _per_op():
        return "tf32" if cudnn.allow_tf32 else "ieee"
    for level in (cudnn.conv.fp32_precision, cudnn.fp32_precision, torch.backends.fp32_precision):
        if level in PRECISIONS:
            return level
    return "ieee"


def _snapshot() -> tuple:
    cudnn = torch.backends.cudnn
    if not _per_op():
        return (cudnn.allow_tf32,)
    legacy = bool(cudnn.allow_tf32) if legacy_flag_readable() else None  # None: torch was left rejecting it
    return (legacy, cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision)


def _restore(state: tuple) -> None:
    cudnn = torch.backends.cudnn
    if not _per_op():
        cudnn.allow_tf32 = state[0]
        return
    legacy, conv, rnn = state
    if legacy is not None:
        cudnn.allow_tf32 = legacy
    cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = conv, rnn


def set_conv_fp32_precision(precision: str) -> None:
    """Let cuDNN convolutions (and so the Triton kernel) use ``"tf32"`` or only ``"ieee"`` fp32; the legacy boolean,
    conv and RNN agree afterwards, so that torch's own ``allow_tf32`` reads stay valid."""
    _check(precision)
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    if _per_op():
        torch.backends.cudnn.conv.fp32_precision = precision
        torch.backends.cudnn.rnn.fp32_precision = precision


@contextlib.contextmanager
def conv_precision(precision: str) -> Iterator[None]:
    """``set_conv_fp32_precision(precision)`` inside the block; the previous settings restored after it."""
    _check(precision)
    saved = _snapshot()
    try:
        set_conv_fp32_precision(precision)
        yield
    finally:
        _restore(saved)


def legacy_flag_readable() -> bool:
    """Whether torch's ``allow_tf32`` read (done by torch.export and ONNX export) succeeds in the current state."""
    try:
        bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:
        return False
    return True
