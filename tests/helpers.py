"""Test helpers: tiny models with random (non-zero) weights, and checkpoints written as training writes them."""

import torch

from pixelcnn.architectures import build_model
from pixelcnn.config import ModelConfig
from pixelcnn.model import AutoregressiveModel


def random_model(
    channels=1,
    num_classes=3,
    hidden=8,
    blocks=2,
    kernel_size=5,
    size=(6, 5),
    dtype=torch.float64,
    seed=0,
    std=0.3,
    arch="pixelcnn",
) -> AutoregressiveModel:
    """A model of ``arch`` whose every weight is random (the trained-from-zero head would hide dependencies)."""
    torch.manual_seed(seed)
    model = build_model(
        ModelConfig(
            channels=channels,
            image_size=tuple(size),
            num_classes=num_classes,
            hidden=hidden,
            blocks=blocks,
            kernel_size=kernel_size,
            arch=arch,
        )
    ).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model.eval()


def write_checkpoint(
    folder,
    channels=1,
    size=(28, 28),
    num_classes=10,
    hidden=8,
    blocks=2,
    kernel_size=7,
    std=0.3,
    name="model.pt",
    arch="pixelcnn",
):
    """Save a random model as a training checkpoint would (what the exporters read); returns (path, model)."""
    from pixelcnn.checkpoint import save_checkpoint
    from pixelcnn.config import Config

    model = random_model(
        channels=channels,
        num_classes=num_classes,
        hidden=hidden,
        blocks=blocks,
        kernel_size=kernel_size,
        size=size,
        dtype=torch.float32,
        std=std,
        arch=arch,
    )
    path = str(folder / name)
    save_checkpoint(path, {"config": Config(model=model.config).to_dict(), "model": model.state_dict()})
    return path, model
