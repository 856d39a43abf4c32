"""The architectures a ``ModelConfig.arch`` names, and the one function that builds a model from a config."""

from __future__ import annotations

from pixelcnn.config import ARCHS, ModelConfig
from pixelcnn.gated import GatedPixelCNN
from pixelcnn.model import AutoregressiveModel, PixelCNN

MODEL_CLASSES: dict[str, type[AutoregressiveModel]] = {"pixelcnn": PixelCNN, "gated": GatedPixelCNN}
assert tuple(MODEL_CLASSES) == ARCHS


def build_model(config: ModelConfig) -> AutoregressiveModel:
    """The model ``config.arch`` names (``pixelcnn``: the seed's masked-conv stack; ``gated``: two-stack gated)."""
    return MODEL_CLASSES[config.validate().arch](config)
