"""Group "forward <shape>": logits of one batch through every path, against the textbook reference
(benchmarks/reference.py: the paper's PixelCNN written with nn.Conv2d + mask buffers, loading the same weights).

Paths: ``reference`` (textbook, eager), ``eager`` (the project's default: cropped kernels, channels-last on CPU),
``compile`` (``pixelcnn.inference.compile_for_inference``: frozen weights, oneDNN convs fused), ``compile-default``
(plain ``torch.compile(model)``, to show what freezing adds), TorchScript, torch.export (.pt2), ONNX Runtime (CPU),
and Triton on a GPU. Each path's logits are checked against the reference before timing.

Beside them, ``gated-<path>``: the gated PixelCNN (``--arch gated``) at matched live parameter count (``GATED``),
through the same paths (no textbook form: its logits are checked against the model itself in float64), paired with
the textbook PixelCNN of the shape, so both architectures' rows and speedups sit in one table.
"""

import copy
import os
import tempfile

import pytest
import torch

from benchmarks.conftest import record, skip_unless_gpu_sizes
from benchmarks.reference import TextbookPixelCNN
from pixelcnn.architectures import build_model
from pixelcnn.config import ModelConfig

# shape -> (channels, size, hidden, blocks, batch); "-h256" is the seed's size, run with --gpu-sizes
SHAPES = {"28x28x1": (1, 28, 64, 5, 64), "32x32x3": (3, 32, 64, 5, 64), "32x32x3-h256": (3, 32, 256, 15, 64)}
# shape -> the gated model's (hidden, blocks) at the PixelCNN's live parameter count: 28x28x1 249k vs 243k, 32x32x3
# 229k vs 243k, h256 7.89M vs 7.74M (docs/DESIGN.md §3; hidden a multiple of 16 on the GPU size, see triton-sass.md)
GATED = {"28x28x1": (40, 6), "32x32x3": (40, 5), "32x32x3-h256": (144, 18)}
PATHS = ["reference", "eager", "compile", "compile-default", "torchscript", "pt2", "onnxruntime", "triton"]
ARCHS = ["pixelcnn", "gated"]
TOL = 1e-3


def build(shape, timing, arch="pixelcnn"):
    c, size, h, blocks, n = SHAPES[shape] if timing else (SHAPES[shape][0], 8, 8, 1, 2)
    if arch == "gated" and timing:
        h, blocks = GATED[shape]
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, channels=c, image_size=(size, size), num_classes=10, hidden=h, blocks=blocks)
    model = build_model(config).eval()
    with torch.no_grad():  # non-zero head: logits that differ per path would show
        model.head_out.weight.normal_(0, 0.05)
    image = torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8)
    labels = torch.arange(n) % 10
    return model, image, labels


def runner(path, model, image, labels, tmp):
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
    if path == "triton" and device != "cuda":
        pytest.skip("the Triton path is timed on a GPU only (on CPU it runs in the interpreter)")
    model = model.to(device)
    if path == "reference":
        m = TextbookPixelCNN.from_state_dict(model.state_dict()).to(device).eval()
    elif path == "triton":
        m = model.set_conv_impl("triton")
    elif path == "compile":
        from pixelcnn.inference import compile_for_inference

        m = compile_for_inference(model)
    elif path == "compile-default":
        m = torch.compile(model)
    else:
        m = model
    x, y = image.to(device), labels.to(device)

    def run():
        out = m(x, y)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    return run


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("arch", ARCHS)
def test_forward(benchmark, request, timing, shape, path, arch):
    skip_unless_gpu_sizes(request, shape.endswith("-h256"))
    gated = arch == "gated"
    if gated and path == "reference":
        pytest.skip("the textbook reference is a PixelCNN: gated paths are paired with it")
    benchmark.group = f"forward {shape}"
    model, image, labels = build(shape, timing, arch)
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        if gated:
            want = copy.deepcopy(model).double()(image, labels).float()
        else:
            want = TextbookPixelCNN.from_state_dict(model.state_dict()).eval()(image, labels)
        run = runner(path, model, image, labels, tmp)
        got = run()  # also compiles / warms up the path
        err = float((got.float().cpu() - want).abs().max())
        assert err <= TOL, (
            f"{arch} {path} logits differ from the {'float64' if gated else 'textbook'} reference by {err}"
        )
        paired = None
        if path != "reference" and timing:
            base = build(shape, timing)[0] if gated else model
            paired = runner("reference", base, image, labels, tmp)
        name = f"gated-{path}" if gated else path
        is_ref = path == "reference"
        record(benchmark, run, items=len(image), unit="images", reference=is_ref, path=name, paired_with=paired)
