"""Groups "sampling batch 1" (latency) and "sampling batch 16" (throughput): whole images from the same model,
labels and uniforms by

- ``naive-reference``: a full forward of the textbook model (benchmarks/reference.py) per sub-pixel — the reference;
- ``naive``: the same loop on the project's model (default conv path), ``naive-compile`` on
  ``pixelcnn.inference.compile_for_inference`` (what ``pixelcnn.sample --method naive --compile`` runs);
- ``cached`` (Python), ``cached_ext`` (C++/CUDA op) and ``onnx_step`` (the exported step model on ONNX Runtime).

Each path's image is checked against the project's naive sampler before it is timed.

The gated architecture (docs/DESIGN.md §3) at the size matched to the default pixelcnn's parameters (h = 40,
6 blocks: 249k live parameters against 243k) joins both groups: ``gated-cached_ext`` (its image checked against the
Python cached sampler, itself bit-identical to naive in the tests), timed paired with pixelcnn's ``cached_ext``
(``paired_speedup`` = pixelcnn time / gated time), and at batch 16 ``gated-naive`` on its first row only
(``NAIVE_ROWS``; every sub-pixel of naive costs one full forward, so its images/s = batch x rows / H / time).
"""

import pytest
import torch

from benchmarks.conftest import record
from benchmarks.reference import TextbookPixelCNN, textbook_sample_naive
from pixelcnn.architectures import build_model
from pixelcnn.config import ModelConfig
from pixelcnn.draw import draw_values
from pixelcnn.extension import load_extension
from pixelcnn.model import PixelCNN
from pixelcnn.sampling import draw_uniforms, sample

METHODS = ["naive-reference", "naive", "naive-compile", "cached", "cached_ext", "onnx_step"]
BATCHES = [1, 16]
_naive: dict = {}


GATED_METHODS = {1: ["gated-cached_ext"], 16: ["gated-cached_ext", "gated-naive"]}
NAIVE_ROWS = 1  # rows of the image gated-naive samples when timed


def setup(timing, batch, arch="pixelcnn"):
    # the trained size of the issue: 28x28x1, h=64, 5 residual blocks; gated at the matched size h=40, 6 blocks
    c, size, h, blocks = (1, 28, 64, 5) if timing else (1, 7, 8, 1)
    if arch == "gated":
        h, blocks = (40, 6) if timing else (8, 1)
    torch.manual_seed(0)
    config = ModelConfig(channels=c, image_size=(size, size), num_classes=10, hidden=h, blocks=blocks, arch=arch)
    model = (PixelCNN(config) if arch == "pixelcnn" else build_model(config)).eval()
    with torch.no_grad():  # non-uniform output so that the images are not trivial
        model.head_out.weight.normal_(0, 0.05)
    labels = torch.arange(batch) % 10
    u = draw_uniforms((batch, c, size, size), torch.Generator().manual_seed(0))
    return model, labels, u


def runner(method, model, labels, u, folder):
    if method == "onnx_step":
        from export.onnx import export_step_onnx
        from export.step import OrtStepSampler

        sampler = OrtStepSampler(export_step_onnx(model, str(folder / "step.onnx")))
        return lambda: torch.from_numpy(sampler.sample(u.numpy(), labels.numpy(), 1.0))
    if method == "naive-reference":
        textbook = TextbookPixelCNN.from_state_dict(model.state_dict()).eval()
        return lambda: textbook_sample_naive(textbook, labels, u, lambda logits, uu: draw_values(logits, uu, 1.0))
    if method == "naive-compile":
        from pixelcnn.inference import compile_for_inference

        fast = compile_for_inference(model)
        return lambda: sample(fast, labels, 1.0, None, "naive", uniforms=u)
    return lambda: sample(model, labels, 1.0, None, method, uniforms=u)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("method", METHODS)
def test_sampling(benchmark, timing, method, batch, tmp_path):
    if method == "cached_ext" and load_extension() is None:
        pytest.skip("extension pixelcnn._C not built")
    benchmark.group = f"sampling batch {batch}"
    model, labels, u = setup(timing, batch)
    key = tuple(u.shape)
    if key not in _naive:
        _naive[key] = sample(model, labels, 1.0, None, "naive", uniforms=u)
    run = runner(method, model, labels, u, tmp_path)
    image = run()  # also compiles / warms up the path
    agree = float((image == _naive[key]).float().mean())
    assert agree >= 0.99, f"{method} differs from the naive sampler on {1 - agree:.1%} of sub-pixels"
    slow = method.startswith("naive")
    record(
        benchmark,
        run,
        items=batch,
        unit="images",
        reference=method == "naive-reference",
        path=method,
        rounds=1 if slow else 5,
        warmup=0 if slow else 1,
    )


def naive_rows(model, labels, u, rows):
    """The naive sampler (a full forward per sub-pixel, as ``sampling._sample_naive``) over the first ``rows`` rows."""
    n, c, _, w = u.shape
    image = torch.zeros(u.shape, dtype=torch.uint8)
    with torch.no_grad():
        for i in range(rows):
            for j in range(w):
                for k in range(c):
                    logits = model.logits(model.normalize(image), labels)[:, :, k, i, j]
                    image[:, k, i, j] = draw_values(logits, u[:, k, i, j], 1.0).to(torch.uint8)
    return image


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("method", ["gated-cached_ext", "gated-naive"])
def test_sampling_gated(benchmark, timing, method, batch):
    if method not in GATED_METHODS[batch]:
        pytest.skip(f"{method} is timed at batch {sorted(b for b, m in GATED_METHODS.items() if method in m)}")
    if load_extension() is None:
        pytest.skip("extension pixelcnn._C not built")
    benchmark.group = f"sampling batch {batch}"
    model, labels, u = setup(timing, batch, "gated")
    fast = lambda: sample(model, labels, 1.0, None, "cached_ext", uniforms=u)  # noqa: E731
    image = fast()
    if method == "gated-cached_ext":
        agree = float((image == sample(model, labels, 1.0, None, "cached", uniforms=u)).float().mean())
        assert agree >= 0.99, f"gated cached_ext differs from the Python cached sampler on {1 - agree:.1%}"
        base_model, base_labels, base_u = setup(timing, batch)
        pixelcnn = lambda: sample(base_model, base_labels, 1.0, None, "cached_ext", uniforms=base_u)  # noqa: E731
        pixelcnn()
        record(benchmark, fast, items=batch, unit="images", path=method, rounds=5, warmup=1, paired_with=pixelcnn)
        return
    rows = NAIVE_ROWS if timing else u.shape[2]
    slow = lambda: naive_rows(model, labels, u, rows)  # noqa: E731
    part = slow()
    assert torch.equal(part[:, :, :rows], image[:, :, :rows]), "gated naive and cached_ext differ"
    benchmark.extra_info["rows_timed"] = rows
    record(benchmark, slow, items=batch * rows / u.shape[2], unit="images", path=method, rounds=1, warmup=0)
