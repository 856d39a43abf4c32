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
            _state["error"] = (f"{e}. Build it with `pip install --no-build-isolation -e .` (make test does) "
                               f"and make sure the same torch is installed as at build time")
    return _state["module"]


def extension_error() -> Optional[str]:
    load_extension()
    return _state["error"]


def cuda_kernels_built() -> bool:
    """Whether the extension was compiled with its CUDA kernels (nvcc ran at build time)."""
    mod = load_extension()
    return bool(mod is not None and mod.cuda_built())
