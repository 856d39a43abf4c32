"""Groups "sampling batch 1/16" (benchmarks/bench_sampling.py) gain ``onnx_sampler``: the ONNX sampler model
(export/sampler.py) in ONNX Runtime, one ``run`` per batch, on the same model, labels and uniforms as the other
sampling paths (28x28x1, h=64, 5 blocks when timing). Its image is checked against the Python cached sampler before
it is timed."""

import pytest
import torch

from benchmarks.bench_sampling import setup as sampling_setup
from benchmarks.conftest import record
from pixelcnn.sampling import sample

_sessions: dict = {}


def _onnx_sampler(model, folder, timing: bool, precision="float32"):
    from export.onnx import export_sampler_onnx
    from export.ort_sampler import OrtSampler

    key = (timing, precision)  # setup() builds the same model for the same ``timing``
    if key not in _sessions:  # once per size and process
        _sessions[key] = OrtSampler(export_sampler_onnx(model, str(folder / "sampler.onnx"), precision=precision))
    return _sessions[key]


@pytest.mark.parametrize("batch", [1, 16])
def test_sampling_onnx(benchmark, timing, batch, tmp_path_factory):
    benchmark.group = f"sampling batch {batch}"
    model, labels, u = sampling_setup(timing, batch)
    sampler = _onnx_sampler(model, tmp_path_factory.mktemp("onnx"), timing)
    run = lambda: torch.from_numpy(sampler.sample(u.numpy(), labels.numpy(), 1.0))
    want = sample(model, labels, 1.0, None, "cached", uniforms=u)
    agree = float((run() == want).float().mean())
    # float32 network: a rare draw at a CDF boundary may differ (docs/DESIGN.md §5)
    assert agree >= 0.99, f"onnx_sampler differs from the cached sampler on {1 - agree:.1%} of sub-pixels"
    benchmark.extra_info["images"] = len(labels)
    record(benchmark, run, items=len(labels), unit="images", rounds=3, warmup=1, path="onnx_sampler")
