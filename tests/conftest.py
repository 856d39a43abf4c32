"""Fixtures: tiny models with random (non-zero) weights; the real MNIST images from ../shared/data."""
import os

import pytest
import torch

from pixelcnn.model import PixelCNN


def random_model(channels=1, num_classes=3, hidden=8, blocks=2, kernel_size=5, size=(6, 5),
                 dtype=torch.float64, seed=0, std=0.3) -> PixelCNN:
    """A PixelCNN whose every weight is random (the trained-from-zero head would hide dependencies)."""
    torch.manual_seed(seed)
    model = PixelCNN(channels=channels, image_size=size, num_classes=num_classes, hidden=hidden, blocks=blocks,
                     kernel_size=kernel_size).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model.eval()


def write_checkpoint(folder, channels=1, size=(28, 28), num_classes=10, hidden=8, blocks=2, kernel_size=7,
                     std=0.3, name="model.pt"):
    """Save a random model as a training checkpoint would (what the exporters read); returns (path, model)."""
    from pixelcnn.checkpoint import save_checkpoint
    from pixelcnn.config import Config
    model = random_model(channels=channels, num_classes=num_classes, hidden=hidden, blocks=blocks,
                         kernel_size=kernel_size, size=size, dtype=torch.float32, std=std)
    path = str(folder / name)
    save_checkpoint(path, {"config": Config(hidden_channels=hidden, residual_blocks=blocks,
                                            kernel_size=kernel_size).to_dict(),
                           "model": model.state_dict(),
                           "data": {"channels": channels, "image_size": list(size), "num_classes": num_classes}})
    return path, model


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
