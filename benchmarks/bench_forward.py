"""Group "forward": logits of one batch through every path — pure-PyTorch reference (F.conv2d on masked weights),
the project's eager default, torch.compile, TorchScript, torch.export and ONNX Runtime (CPU; + Triton on a GPU).
Each path's logits are checked against the reference before timing."""
import os
import tempfile

import pytest
import torch

from benchmarks.conftest import record
from pixelcnn.config import ModelConfig
from pixelcnn.model import PixelCNN

SHAPES = {"28x28x1": (1, 28), "32x32x3": (3, 32)}
PATHS = ["reference", "eager", "compile", "torchscript", "pt2", "onnxruntime", "triton"]
TOL = 1e-3


def build(shape, timing, seed_size):
    c, size = SHAPES[shape]
    h, blocks, n = ((256, 15, 64) if seed_size else (64, 5, 64)) if timing else (8, 1, 2)
    size = size if timing else 8
    torch.manual_seed(0)
    model = PixelCNN(ModelConfig(channels=c, image_size=(size, size), num_classes=10, hidden=h, blocks=blocks)).eval()
    with torch.no_grad():
        model.head_out.weight.normal_(0, 0.05)
    image = torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8)
    labels = torch.arange(n) % 10
    return model, image, labels


def runner(path, model, image, labels, tmp):
    from export.wrapper import ExportModule
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if path == "onnxruntime":
        from export.onnx import export_onnx, ort_runner, ort_session
        f = export_onnx(model, os.path.join(tmp, "m.onnx"))
        run = ort_runner(ort_session(f))
        return lambda: torch.from_numpy(run(image, labels))
    if path == "torchscript":
        from export.torchscript import export_torchscript, load_torchscript
        m = load_torchscript(export_torchscript(model, os.path.join(tmp, "m.ts")))
        return lambda: m(image, labels)
    if path == "pt2":
        from export.pt2 import export_pt2, load_pt2
        m = load_pt2(export_pt2(model, os.path.join(tmp, "m.pt2")))
        return lambda: m(image, labels)
    m = ExportModule(model) if path == "reference" else model
    if path == "triton":
        if device != "cuda":
            pytest.skip("the Triton path is timed on a GPU only (on CPU it runs in the interpreter)")
        m = model.to(device).set_conv_impl("triton")
    if path == "compile":
        m = torch.compile(model)
    x, y = image.to(device), labels.to(device)
    m = m.to(device)

    def run():
        out = m(x, y)
        if device == "cuda":
            torch.cuda.synchronize()
        return out
    return run


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("path", PATHS)
def test_forward(benchmark, timing, gpu_sizes, shape, path):
    benchmark.group = f"forward {shape}"
    model, image, labels = build(shape, timing, seed_size=False)
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        want = model(image, labels)
        run = runner(path, model, image, labels, tmp)
        got = run()
        err = float((got.float().cpu() - want).abs().max())
        assert err <= TOL, f"{path} logits differ from the reference by {err}"
        record(benchmark, run, items=len(image), unit="images", reference=path == "reference")
