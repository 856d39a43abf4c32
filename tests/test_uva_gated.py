"""The UvA tutorial 12 baseline (benchmarks/uva_gated.py) is a valid autoregressive model without a blind spot, and
the architecture comparison (benchmarks/compare_architectures.py) runs end to end on a tiny budget."""

import csv
import os

import pytest
import torch

from benchmarks.uva_gated import UvaGatedPixelCNN
from pixelcnn.architectures import build_model
from pixelcnn.config import ModelConfig
from pixelcnn.pixels import to_unit


def random_uva(num_classes: int, size=(7, 9)) -> UvaGatedPixelCNN:
    torch.manual_seed(0)
    model = UvaGatedPixelCNN(hidden=6, num_classes=num_classes, image_size=size).double()
    with torch.no_grad():  # every weight random: PyTorch's default init alone could hide a dependency
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


@pytest.mark.parametrize("num_classes", [0, 4])
def test_uva_logits_depend_on_exactly_the_earlier_pixels(num_classes):
    """No pixel at or after p reaches the logits at p, and every pixel before p does (no blind spot), within the
    dilated stack's reach: rows up to 1 + (1+2+1+4+1+2+1) = 13 above and columns up to 13 left in its own row."""
    h, w = 7, 9
    model = random_uva(num_classes, (h, w))
    # one copy of the image per target pixel p: copy p's logit at p only, so one backward pass gives every p's
    # input gradient (the images of a batch do not interact)
    x = (torch.rand(1, 1, h, w, dtype=torch.float64) * 255).repeat(h * w, 1, 1, 1).requires_grad_(True)
    labels = torch.full((h * w,), 3) if num_classes else None
    logits = model.logits(to_unit(x, x.dtype), labels)[:, 17, 0]  # [h*w, h, w]
    p = torch.arange(h * w)
    logits[p, p // w, p % w].sum().backward()
    for k in range(h * w):
        earlier = torch.arange(h * w).view(h, w) < k  # raster order of one channel
        g = x.grad[k, 0]
        assert torch.all(g[~earlier] == 0), f"logits at {divmod(k, w)} see the pixel there or a later one"
        assert torch.all(g[earlier] != 0), f"logits at {divmod(k, w)} miss an earlier pixel (a blind spot)"


def test_uva_forward_takes_uint8_images_and_checks_them():
    model = UvaGatedPixelCNN(hidden=4, num_classes=10)
    image = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    logits = model(image, torch.tensor([1, 7]))
    assert logits.shape == (2, 256, 1, 28, 28)
    with pytest.raises(ValueError, match="labels are required"):
        model(image)
    with pytest.raises(ValueError, match="1 channel"):
        model(torch.zeros(2, 3, 28, 28, dtype=torch.uint8), torch.tensor([1, 7]))


def test_compared_models_have_matched_live_parameters():
    """The comparison's sizes: gated and UvA within 3% of pixelcnn's default live parameter count."""
    from benchmarks.compare_architectures import GATED_SIZE, UVA_HIDDEN

    shape = {"channels": 1, "image_size": (28, 28), "num_classes": 10}
    pixelcnn = build_model(ModelConfig(arch="pixelcnn", **shape)).live_parameters()
    gated = build_model(ModelConfig(arch="gated", **shape, **GATED_SIZE)).live_parameters()
    uva = UvaGatedPixelCNN(UVA_HIDDEN, 10).live_parameters()
    assert pixelcnn == 242_816
    assert abs(gated / pixelcnn - 1) < 0.03 and abs(uva / pixelcnn - 1) < 0.03
    # the UvA width is the one nearest pixelcnn's count
    assert all(abs(UvaGatedPixelCNN(c, 10).live_parameters() - pixelcnn) > abs(uva - pixelcnn) for c in (38, 40))


def test_comparison_runs_end_to_end_and_writes_its_outputs(tmp_path, mnist_test_images):
    """Tiny budget on a tiny ImageFolder of real MNIST crops (8x8: sampling is 64 steps)."""
    from PIL import Image

    from benchmarks.compare_architectures import main

    images, labels = mnist_test_images
    root = tmp_path / "data"
    first = {}  # test split: the first image of each class (both splits need every class folder)
    for k, label in enumerate(labels.tolist()):
        first.setdefault(label, k)
    for k, (img, label) in enumerate(zip(images, labels.tolist(), strict=True)):
        for split in ("train", "test") if first[label] == k else ("train",):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[0, 10:18, 10:18].numpy()).save(folder / f"{k}.png")
    out = tmp_path / "out"
    args = ["--minutes", "0.002", "--out", str(out), "--data-dir", str(root), "--smoke", "--evals", "1"]
    assert main([*args, "--n-per-class", "1"]) == 0
    grids = [f"{arch}-samples-t{t}.png" for arch in ("gated", "pixelcnn") for t in ("0.6", "1.0")]
    for name in ("arch-comparison.csv", "arch-comparison.png", "arch-comparison.md", *grids):
        assert os.path.getsize(out / name) > 0, name
    assert not os.path.exists(out / "uva-samples-t0.6.png")  # the project's samplers serve its own models only
    with open(out / "arch-comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["arch"] for r in rows} == {"gated", "pixelcnn", "uva"}
    for arch in ("gated", "pixelcnn", "uva"):
        finals = [r for r in rows if r["arch"] == arch and r["at"] == "final"]
        assert len(finals) == 1 and float(finals[0]["minutes"]) >= 0.002
        assert 0 < float(finals[0]["test_bpd"]) < 9
    table = (out / "arch-comparison.md").read_text()
    assert "torch " + torch.__version__ in table and "| UvA tutorial 12 gated |" in table
