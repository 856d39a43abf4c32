"""The benchmarks' textbook PixelCNN (benchmarks/reference.py) computes the model's logits from its state dict, and
its naive sampler draws the model's images: every "vs reference" speedup compares the same computation."""

import pytest
import torch

from benchmarks.reference import TextbookPixelCNN, textbook_loss, textbook_mask, textbook_sample_naive
from pixelcnn.draw import draw_values
from pixelcnn.likelihood import nll_nats
from pixelcnn.masks import conv_mask
from pixelcnn.sampling import draw_uniforms, sample
from tests.helpers import random_model


@pytest.mark.parametrize("channels,num_classes,kernel_size", [(1, 10, 7), (1, 0, 5), (3, 4, 7), (3, 0, 3)])
def test_textbook_logits_match_the_model(channels, num_classes, kernel_size):
    model = random_model(
        channels=channels,
        num_classes=num_classes,
        hidden=8,
        blocks=2,
        kernel_size=kernel_size,
        size=(8, 7),
        dtype=torch.float32,
        std=0.2,
    )
    ref = TextbookPixelCNN.from_state_dict(model.state_dict()).eval()
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (3, channels, 8, 7), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, num_classes, (3,), generator=g) if num_classes else None
    with torch.no_grad():
        want, got = model(image, labels), ref(image, labels)
    assert got.shape == want.shape == (3, 256, channels, 8, 7)
    assert want.abs().max() > 0.5  # random weights: logits far from uniform, so a wrong layer would show
    assert float((got - want).abs().max()) <= 1e-4
    assert float((textbook_loss(got, image) - nll_nats(want, image)).abs()) <= 1e-5


def test_textbook_masks_are_the_papers():
    for mask_type in "AB":
        for colors in (1, 3):
            assert torch.equal(textbook_mask(6, 9, 5, mask_type, colors), conv_mask(6, 9, 5, mask_type, colors))


def test_textbook_gradients_match_the_model():
    model = random_model(
        channels=3, num_classes=4, hidden=8, blocks=1, kernel_size=5, size=(6, 6), dtype=torch.float32, std=0.2
    ).train()
    ref = TextbookPixelCNN.from_state_dict(model.state_dict()).train()
    image = torch.randint(0, 256, (2, 3, 6, 6), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    labels = torch.tensor([0, 3])
    nll_nats(model(image, labels), image).backward()
    textbook_loss(ref(image, labels), image).backward()
    ours = dict(model.named_parameters())
    for name, p in ref.named_parameters():
        assert float((p.grad - ours[name].grad).abs().max()) <= 1e-4, name


def test_textbook_naive_sampler_draws_the_models_images():
    model = random_model(
        channels=3, num_classes=3, hidden=8, blocks=1, kernel_size=3, size=(4, 3), dtype=torch.float32, std=0.3
    )
    ref = TextbookPixelCNN.from_state_dict(model.state_dict()).eval()
    labels = torch.tensor([0, 2])
    u = draw_uniforms((2, 3, 4, 3), torch.Generator().manual_seed(0))
    want = sample(model, labels, 1.0, None, "naive", uniforms=u)
    got = textbook_sample_naive(ref, labels, u, lambda logits, uu: draw_values(logits, uu, 1.0))
    assert (got == want).float().mean() >= 0.97  # float32: only draws at a CDF boundary may differ


def test_not_a_state_dict_is_refused():
    sd = random_model(hidden=8, blocks=1).state_dict()
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="not a PixelCNN state dict"):
        TextbookPixelCNN.from_state_dict({k: v.float() for k, v in sd.items()})
