"""Session-wide test set-up shared by tests/ and benchmarks/."""

import os

import pytest

# Triton's interpreter runs the kernels on CPU tensors; it must be chosen before triton is first imported.
try:
    import torch

    _has_cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = os.path.dirname(os.path.abspath(__file__))


def shared_data_dir() -> str:
    """../shared/data beside the checkout (override with PIXELCNN_SHARED_DATA)."""
    return os.environ.get("PIXELCNN_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))


@pytest.fixture(scope="session")
def shared_data() -> str:
    path = shared_data_dir()
    if not os.path.isdir(os.path.join(path, "mnist-t10k-folder")):
        pytest.fail(
            f"real test data not found at {path}: expected ../shared/data beside the checkout "
            f"(or set PIXELCNN_SHARED_DATA)"
        )
    return path


def pytest_configure(config):
    # plain `pytest` / `make test` runs each benchmark once as a test; `pytest --benchmark-only` times them
    opt = config.option
    if hasattr(opt, "benchmark_only") and not opt.benchmark_only and not getattr(opt, "benchmark_enable", False):
        opt.benchmark_disable = True
