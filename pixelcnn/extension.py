"""Loads the compiled extension ``pixelcnn._C`` (ops ``torch.ops.pixelcnn.*``) and remembers why it failed."""

from __future__ import annotations

import importlib
from typing import Optional

_state: dict = {}


def load_extension():
    """Return the ``pixelcnn._C`` module, or None if it is not built/loadable (see ``extension_error``)."""
    if "module" not in _state:
        try:
            import torch  # noqa: F401  (the extension links against torch's libraries)

            _state["module"] = importlib.import_module("pixelcnn._C")
            _state["error"] = None
        except ImportError as e:
            _state["module"] = None
            _state["error"] = (
                f"{e}. Build it with `pip install --no-build-isolation -e .` (make test does) "
                f"and make sure the same torch is installed as at build time"
            )
    return _state["module"]


def extension_error() -> Optional[str]:
    load_extension()
    return _state["error"]


def cuda_kernels_built() -> bool:
    """Whether CUDA kernels of ``pixelcnn::cached_sample`` are registered, as torch's dispatcher says (they are
    when nvcc compiled them into the extension); works without a GPU."""
    import torch

    return load_extension() is not None and torch._C._dispatch_has_kernel_for_dispatch_key(
        "pixelcnn::cached_sample", "CUDA"
    )


def cpu_isa() -> str:
    """The vector ISA ``cached_sample`` takes on CPU now (``scalar``, ``avx2`` or ``avx512``): ``PIXELCNN_CPU_ISA``
    when set (ValueError if this CPU cannot run it), else the widest this CPU runs."""
    mod = load_extension()
    if mod is None:
        raise RuntimeError(f"the C++ extension is not available: {extension_error()}")
    return mod.cpu_isa()


def cpu_isas() -> tuple[str, ...]:
    """Every vector ISA this build of the extension and this CPU run, scalar first."""
    mod = load_extension()
    if mod is None:
        raise RuntimeError(f"the C++ extension is not available: {extension_error()}")
    return mod.cpu_isas()
