"""Completion (docs/DESIGN.md §5): ``sample(..., known=, known_mask=)`` copies known sub-pixels instead of drawing
them, later sub-pixels condition on them, and every method gives the same completion for the same uniforms; the CLI
``python -m pixelcnn.sample --complete IMAGE.png --keep-rows R`` writes a grid of given | completions."""

import os

import numpy as np
import pytest
import torch

from pixelcnn.extension import extension_error, load_extension
from pixelcnn.sample import main as sample_main
from pixelcnn.sampling import draw_uniforms, sample
from tests.helpers import random_model, write_checkpoint

METHODS = ["naive", "cached"] + (["cached_ext"] if load_extension() is not None else [])


def scattered_mask(n, c, h, w, seed):
    """Known sub-pixels: the top row plus random single sub-pixels anywhere (some in the last colour channel)."""
    mask = torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) < 0.3
    mask[:, :, 0] = True
    return mask


@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
@pytest.mark.parametrize("channels,conditional", [(1, True), (3, False), (3, True)])
def test_every_method_completes_identically_and_keeps_known_subpixels(channels, conditional, arch):
    model = random_model(
        channels=channels,
        num_classes=5 if conditional else 0,
        hidden=10,
        blocks=2,
        kernel_size=5,
        size=(6, 5),
        std=0.25,
        arch=arch,
    )
    methods = METHODS if arch == "pixelcnn" else ["naive", "cached"]  # extension: tests/test_extension.py
    n, c, (h, w) = 4, channels, model.image_size
    labels = torch.tensor([0, 4, 2, 2]) if conditional else None
    known = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    mask = scattered_mask(n, c, h, w, seed=2)
    u = draw_uniforms((n, c, h, w), torch.Generator().manual_seed(3))
    images = {m: sample(model, labels, 0.75, None, m, n=n, uniforms=u, known=known, known_mask=mask) for m in methods}
    assert torch.equal(images["naive"][mask], known[mask])
    for m in methods[1:]:
        assert torch.equal(images[m], images["naive"]), m
    plain = sample(model, labels, 0.75, None, "cached", n=n, uniforms=u)
    free = ~mask
    # known values flow through the caches: the drawn sub-pixels differ from plain sampling's
    assert (images["cached"][free] != plain[free]).float().mean() > 0.2
    all_false = sample(
        model, labels, 0.75, None, "cached", n=n, uniforms=u, known=known, known_mask=torch.zeros_like(mask)
    )
    assert torch.equal(all_false, plain)
    assert load_extension() is not None, f"cached_ext must be tested: {extension_error()}"


@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
def test_completion_of_a_sample_with_its_own_uniforms_gives_the_sample_back(arch):
    """Keeping the top rows of an image sampled with U and completing with the same U redraws the same image: the
    completion conditions on exactly the context the sampler saw."""
    model = random_model(channels=3, num_classes=3, hidden=8, blocks=2, kernel_size=3, size=(5, 5), std=0.3, arch=arch)
    labels = torch.tensor([0, 1, 2])
    u = draw_uniforms((3, 3, 5, 5), torch.Generator().manual_seed(5))
    image = sample(model, labels, 1.0, None, "cached", uniforms=u)
    mask = torch.zeros(image.shape, dtype=torch.bool)
    mask[:, :, :2] = True
    for m in METHODS if arch == "pixelcnn" else ["naive", "cached"]:
        assert torch.equal(sample(model, labels, 1.0, None, m, uniforms=u, known=image, known_mask=mask), image), m


@pytest.mark.parametrize("method", METHODS)
def test_bad_completion_inputs_are_rejected_clearly(method):
    model = random_model(channels=1, num_classes=2, hidden=6, blocks=1, kernel_size=3, size=(4, 4))
    labels = torch.tensor([0, 1])
    known = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="pass both known"):
        sample(model, labels, 1.0, None, method, known=known)
    with pytest.raises(ValueError, match=r"known_mask must be bool \[2, 1, 4, 4\]"):
        sample(model, labels, 1.0, None, method, known=known, known_mask=mask[:, :, :3])
    with pytest.raises(ValueError, match=r"known_mask must be bool"):
        sample(model, labels, 1.0, None, method, known=known, known_mask=mask.to(torch.uint8))
    with pytest.raises(ValueError, match=r"known must be uint8 \[2, 1, 4, 4\]"):
        sample(model, labels, 1.0, None, method, known=known.float(), known_mask=mask)
    with pytest.raises(ValueError, match=r"known must be uint8 \[2, 1, 4, 4\]"):
        sample(model, labels, 1.0, None, method, known=known[:1], known_mask=mask[:1])


def write_png(path, image):
    from PIL import Image

    array = image.permute(1, 2, 0).numpy()
    Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(path)


def test_cli_completes_given_images_into_a_grid(tmp_path, capsys):
    from PIL import Image

    path, model = write_checkpoint(tmp_path, channels=1, size=(8, 8), num_classes=3, hidden=8, blocks=1, kernel_size=3)
    given = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    for k in range(2):
        write_png(tmp_path / f"g{k}.png", given[k])
    out = tmp_path / "grid.png"
    args = [
        "--checkpoint",
        path,
        "--complete",
        str(tmp_path / "g0.png"),
        str(tmp_path / "g1.png"),
        "--keep-rows",
        "3",
        "--classes",
        "1",
        "2",
        "--n-per-class",
        "3",
        "--method",
        "cached",
        "--seed",
        "4",
        "--out",
        str(out),
    ]
    assert sample_main(args) == 0
    assert "6 images with cached" in capsys.readouterr().out
    grid = np.asarray(Image.open(out).convert("L"))
    # save_grid: 8x8 images enlarged 4x to 32 px, 2 px padding; 2 rows of 1 given + 3 completions
    assert grid.shape == (2 + 2 * 34, 2 + 4 * 34)
    cell = lambda r, k: torch.from_numpy(grid[2 + 34 * r : 34 + 34 * r : 4, 2 + 34 * k : 34 + 34 * k : 4].copy())
    labels = torch.tensor([1, 1, 1, 2, 2, 2])
    known = given.repeat_interleave(3, dim=0)
    mask = torch.zeros_like(known, dtype=torch.bool)
    mask[:, :, :3] = True
    want = sample(model, labels, 1.0, torch.Generator().manual_seed(4), "cached", known=known, known_mask=mask)
    for r in range(2):
        assert torch.equal(cell(r, 0)[:3], given[r, 0, :3]) and (cell(r, 0)[3:] == 128).all()
        for k in range(3):
            assert torch.equal(cell(r, k + 1), want[3 * r + k, 0])


def test_cli_completion_errors_leave_no_file(tmp_path, capsys):
    path, _ = write_checkpoint(tmp_path, channels=1, size=(8, 8), num_classes=3, hidden=8, blocks=1, kernel_size=3)
    write_png(tmp_path / "small.png", torch.zeros(1, 6, 8, dtype=torch.uint8))
    write_png(tmp_path / "ok.png", torch.zeros(1, 8, 8, dtype=torch.uint8))
    out = tmp_path / "x.png"
    cases = [
        (["--complete", str(tmp_path / "small.png"), "--keep-rows", "2", "--classes", "0"], "is 6x8"),
        (["--complete", str(tmp_path / "ok.png"), "--keep-rows", "9", "--classes", "0"], "--keep-rows R"),
        (["--complete", str(tmp_path / "ok.png"), "--keep-rows", "2"], "needs --classes"),
        (["--complete", str(tmp_path / "missing.png"), "--keep-rows", "2", "--classes", "0"], "does not exist"),
    ]
    for extra, message in cases:
        assert sample_main(["--checkpoint", path, "--out", str(out)] + extra) == 2
        assert message in capsys.readouterr().err
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
