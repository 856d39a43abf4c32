"""Bad inputs to the model give ValueError naming what was expected."""

import pytest
import torch

from pixelcnn.config import ModelConfig
from pixelcnn.model import PixelCNN


@pytest.fixture(scope="module")
def model():
    return PixelCNN(ModelConfig(channels=1, image_size=(8, 8), num_classes=10, hidden=8, blocks=1, kernel_size=3))


GOOD = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
LABELS = torch.tensor([0, 9])


@pytest.mark.parametrize(
    "image,labels,match",
    [
        (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), LABELS, "1 channel"),
        (torch.zeros(2, 1, 9, 8, dtype=torch.uint8), LABELS, "must be 8x8"),
        (torch.zeros(1, 8, 8, dtype=torch.uint8), LABELS[:1], "4-D tensor"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.int32), LABELS, "uint8"),
        (torch.full((2, 1, 8, 8), 300.0), LABELS, "0..255"),
        (torch.full((2, 1, 8, 8), -0.5), LABELS, "0..255"),
        (GOOD, torch.tensor([0, 10]), r"labels must lie in 0..9"),
        (GOOD, torch.tensor([-1, 0]), r"labels must lie in 0..9"),
        (GOOD, torch.tensor([0]), r"labels must be \[N\]"),
        (GOOD, None, "labels are required"),
    ],
)
def test_bad_input_raises_value_error_naming_expectation(model, image, labels, match):
    with pytest.raises(ValueError, match=match):
        model(image, labels)


def test_good_input_gives_logits_layout(model):
    out = model(GOOD, LABELS)
    assert out.shape == (2, 256, 1, 8, 8)
    assert model(GOOD.float(), LABELS).shape == out.shape


def test_unconditional_model_refuses_labels():
    m = PixelCNN(ModelConfig(channels=3, image_size=(4, 4), num_classes=0, hidden=6, blocks=1, kernel_size=3))
    assert m(torch.zeros(1, 3, 4, 4, dtype=torch.uint8)).shape == (1, 256, 3, 4, 4)
    with pytest.raises(ValueError, match="unconditional"):
        m(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.tensor([0]))
