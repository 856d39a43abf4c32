"""Compiled inference (pixelcnn.inference): frozen-weight torch.compile gives the eager logits and the naive
sampler's images, leaves the model it was given alone, and `pixelcnn.sample --compile` runs it."""

import pytest
import torch

from pixelcnn.inference import compile_for_inference
from pixelcnn.sample import main as sample_main
from pixelcnn.sampling import draw_uniforms, sample
from tests.helpers import random_model, write_checkpoint


@pytest.mark.slow
def test_compiled_inference_matches_eager_and_samples_the_same_images():
    model = random_model(
        channels=3, num_classes=3, hidden=8, blocks=1, kernel_size=3, size=(4, 4), dtype=torch.float32, std=0.2
    )
    fast = compile_for_inference(model)
    assert fast is not model and fast.logits is not model.logits  # the model given keeps its eager network
    assert fast.conv_first.weight is model.conv_first.weight
    image = torch.randint(0, 256, (2, 3, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        want, got = model(image, labels), fast(image, labels)
    assert float(want.abs().max()) > 0.1 and float((got - want).abs().max()) <= 1e-4
    u = draw_uniforms((2, 3, 4, 4), torch.Generator().manual_seed(1))
    eager_img = sample(model, labels, 1.0, None, "naive", uniforms=u)
    fast_img = sample(fast, labels, 1.0, None, "naive", uniforms=u)
    assert (fast_img == eager_img).float().mean() >= 0.97  # float32: only draws at a CDF boundary may differ


@pytest.mark.slow
def test_compiled_inference_really_freezes_the_weights():
    # frozen weights are constants of the compiled code (on CPU: pre-packed for oneDNN convolutions fused with their
    # epilogue), not inputs, which is what a compile with freezing=True in its options alone gave
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    model = random_model(
        channels=1, num_classes=2, hidden=8, blocks=1, kernel_size=3, size=(4, 4), dtype=torch.float32, std=0.2
    )
    fast = compile_for_inference(model)
    image = torch.randint(0, 256, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        got, code = run_and_get_code(fast, image, torch.tensor([0, 1]))
    code = "\n".join(code)
    assert "_frozen_param" in code
    if torch.backends.mkldnn.is_available():
        assert "mkldnn._convolution_pointwise" in code


def test_compile_for_inference_refuses_other_modules():
    with pytest.raises(TypeError, match="takes a PixelCNN"):
        compile_for_inference(torch.nn.Linear(2, 2))


def test_sample_cli_compile_is_for_the_naive_method(tmp_path, capsys):
    path, _ = write_checkpoint(tmp_path, size=(4, 4), num_classes=2, hidden=8, blocks=1, kernel_size=3)
    assert sample_main(["--checkpoint", path, "--method", "cached", "--compile", "--out", str(tmp_path / "s.png")]) == 2
    assert "--compile applies to --method naive" in capsys.readouterr().err
    assert not (tmp_path / "s.png").exists()


@pytest.mark.slow
def test_sample_cli_naive_compile_writes_the_grid(tmp_path):
    path, _ = write_checkpoint(tmp_path, size=(4, 4), num_classes=2, hidden=8, blocks=1, kernel_size=3)
    out = tmp_path / "s.png"
    assert (
        sample_main(["--checkpoint", path, "--method", "naive", "--compile", "--n-per-class", "1", "--out", str(out)])
        == 0
    )
    assert out.stat().st_size > 0
