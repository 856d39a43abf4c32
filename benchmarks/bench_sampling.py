"""Group "sampling": naive (full forward per sub-pixel) vs cached (Python) vs cached_ext (C++/CUDA) vs the exported
ONNX step model driven by ONNX Runtime (export/ort_sampler.py); same model, labels and uniforms; each path's image is
checked against the naive reference before it is timed."""
import pytest
import torch

from benchmarks.conftest import record
from pixelcnn.extension import load_extension
from pixelcnn.config import ModelConfig
from pixelcnn.model import PixelCNN
from pixelcnn.sampling import draw_uniforms, sample

_reference: dict = {}


def setup(timing):
    # the trained size of the issue: 28x28x1, h=64, 5 residual blocks, batch 16
    c, size, h, blocks, n = (1, 28, 64, 5, 16) if timing else (1, 7, 8, 1, 2)
    torch.manual_seed(0)
    model = PixelCNN(ModelConfig(channels=c, image_size=(size, size), num_classes=10, hidden=h, blocks=blocks)).eval()
    with torch.no_grad():  # non-uniform output so that the images are not trivial
        model.head_out.weight.normal_(0, 0.05)
    labels = torch.arange(n) % 10
    u = draw_uniforms((n, c, size, size), torch.Generator().manual_seed(0))
    return model, labels, u, n * c * size * size


def _ort_step_runner(model, labels, u, folder):
    from export.onnx import export_step_onnx
    from export.step import OrtStepSampler
    sampler = OrtStepSampler(export_step_onnx(model, str(folder / "step.onnx")))
    return lambda: torch.from_numpy(sampler.sample(u.numpy(), labels.numpy(), 1.0))


@pytest.mark.parametrize("method", ["naive", "cached", "cached_ext", "onnx_step"])
def test_sampling(benchmark, timing, method, tmp_path):
    if method == "cached_ext" and load_extension() is None:
        pytest.skip("extension pixelcnn._C not built")
    benchmark.group = "sampling"
    model, labels, u, subpixels = setup(timing)
    key = tuple(u.shape)
    if key not in _reference:
        _reference[key] = sample(model, labels, 1.0, None, "naive", uniforms=u)
    if method == "onnx_step":
        run = _ort_step_runner(model, labels, u, tmp_path)
    else:
        run = lambda: sample(model, labels, 1.0, None, method, uniforms=u)
    image = run()
    agree = float((image == _reference[key]).float().mean())
    assert agree >= 0.99, f"{method} differs from the naive reference on {1 - agree:.1%} of sub-pixels"
    benchmark.extra_info["images"] = len(labels)
    record(benchmark, run, items=len(labels), unit="images", reference=method == "naive",
           rounds=1 if method == "naive" else 3, warmup=0 if method == "naive" else 1)
