"""Where the CUDA toolkit is, for the extension build and for torch's own use (no torch import here: setup.py loads
this file before torch is imported).

torch guesses CUDA_HOME from the folder above ``nvcc`` (``/usr/local`` for ``/usr/local/bin/nvcc``), which may lack
``libcudart``; and whenever ``torch.utils.cpp_extension`` is imported (the build, and inductor under
``torch.compile``) on a machine with a toolkit and no GPU it logs "No CUDA runtime is found, using CUDA_HOME=...".
On a CPU-only machine that line is expected, not a failure: ``use_cuda_toolkit()`` points CUDA_HOME at the real
toolkit and drops exactly that one log record (every other warning of that logger still shows).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from typing import Optional

_NOTICE = "No CUDA runtime is found"


def find_cuda_home() -> Optional[str]:
    """The toolkit folder that holds both bin/nvcc and lib*/libcudart.so, or None."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for root in filter(None, candidates):
        if os.path.isfile(os.path.join(root, "bin", "nvcc")) and glob.glob(os.path.join(root, "lib*", "libcudart.so*")):
            return root
    return None


class _CpuOnlyNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_NOTICE)


def use_cuda_toolkit() -> Optional[str]:
    """Set CUDA_HOME to the real toolkit (unless the user set it) and silence torch's CPU-only notice; returns it."""
    root = os.environ.get("CUDA_HOME") or find_cuda_home()
    if root:
        os.environ.setdefault("CUDA_HOME", root)
    logger = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _CpuOnlyNotice) for f in logger.filters):
        logger.addFilter(_CpuOnlyNotice())
    return root
