"""bits/dim on real MNIST images: uniform at initialisation, and equal to an independent computation."""

import math

import numpy as np
import torch

from pixelcnn.config import ModelConfig
from pixelcnn.likelihood import bits_per_dim
from pixelcnn.model import PixelCNN
from tests.helpers import random_model

TOL = 1e-5  # bits/dim, float64 model


def independent_bpd(logits: torch.Tensor, image: torch.Tensor) -> float:
    """Per sub-pixel log-softmax in numpy, summed in float64 and converted to bits."""
    lg = logits.detach().double().numpy()  # [N, 256, C, H, W]
    lg = np.moveaxis(lg, 1, -1).reshape(-1, 256)  # [N*C*H*W, 256]
    target = image.numpy().reshape(-1).astype(np.int64)
    m = lg.max(axis=1, keepdims=True)
    logz = m[:, 0] + np.log(np.exp(lg - m).sum(axis=1))
    nll = logz - lg[np.arange(len(target)), target]
    return float(nll.mean() / math.log(2.0))


def test_untrained_model_is_uniform_8_bits_per_dim_on_real_mnist(mnist_test_images):
    images, labels = mnist_test_images
    model = PixelCNN(ModelConfig(channels=1, image_size=(28, 28), num_classes=10, hidden=16, blocks=2)).double()
    with torch.no_grad():
        bpd = float(bits_per_dim(model(images, labels), images))
    assert abs(bpd - 8.0) < TOL, bpd


def test_bits_per_dim_equals_independent_computation(mnist_test_images):
    images, labels = mnist_test_images
    images, labels = images[:8], labels[:8]
    model = random_model(channels=1, num_classes=10, hidden=8, blocks=2, kernel_size=7, size=(28, 28), std=0.1)
    with torch.no_grad():
        logits = model(images, labels)
    got = float(bits_per_dim(logits, images))
    want = independent_bpd(logits, images)
    assert abs(got - want) < TOL and abs(got - 8.0) > 0.01, (got, want)


def test_nll_of_channels_last_logits_and_its_gradient_match_independent_computation():
    # the model's CPU logits are channels-last views; nll_nats reads them as rows of 256 levels (1 and 3 channels),
    # in float32 like the training loss
    from pixelcnn.likelihood import nll_nats

    g = torch.Generator().manual_seed(0)
    for c in (1, 3):
        image = torch.randint(0, 256, (2, c, 5, 4), generator=g, dtype=torch.uint8)
        flat = torch.randn(2, 256 * c, 5, 4, generator=g, dtype=torch.float64)
        grads = []
        for layout in (torch.contiguous_format, torch.channels_last):
            leaf = flat.clone().contiguous(memory_format=layout).requires_grad_()
            logits = leaf.view(2, 256, c, 5, 4)
            loss = nll_nats(logits, image)
            loss.backward()
            assert abs(float(loss.detach()) / math.log(2.0) - independent_bpd(logits, image)) < TOL
            grads.append(leaf.grad)
        assert float((grads[0] - grads[1]).abs().max()) < 1e-7 * float(grads[0].abs().max())
