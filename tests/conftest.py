"""Fixtures: the real MNIST test images (helpers that build models live in tests/helpers.py)."""

import os

import pytest
import torch


@pytest.fixture(scope="session")
def mnist_test_images(shared_data):
    """The first 64 real MNIST test images as uint8 [64, 1, 28, 28] with labels, read from the raw idx file."""
    import gzip

    import numpy as np

    raw = os.path.join(shared_data, "MNIST", "raw")
    with gzip.open(os.path.join(raw, "t10k-images-idx3-ubyte.gz")) as f:
        data = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(os.path.join(raw, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return torch.from_numpy(data[:64].copy()), torch.from_numpy(labels[:64].astype("int64"))
