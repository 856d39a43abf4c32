"""Group "sampling_cuda" (GPU only): naive sampling on the GPU vs the fused CUDA kernels (cached_ext on CUDA
tensors), one persistent launch for the whole loop (gated: for each row) and one launch per step, at 28x28x1 (h=64,
5 blocks, and the gated model at the same live parameter count, h=40, 6 layers; batch 1 and 16) and, with
--gpu-sizes, the seed size (32x32x3, h=256, 15 blocks, batch 1 and 64). Each image is checked against the CPU op
(float64: bit-identical) before it is timed; naive-on-GPU is timed on a short prefix of rows (its cost per sub-pixel
is the same for every row) and reported per image."""

import dataclasses

import pytest
import torch

from benchmarks.conftest import record
from pixelcnn.architectures import build_model
from pixelcnn.config import ModelConfig
from pixelcnn.extension import cuda_kernels_built, load_extension
from pixelcnn.sampling import draw_uniforms, sample

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")

SIZES = {  # name: (arch, channels, size, hidden, blocks, batch); gated h40/6 matches pixelcnn h64/5's live parameters
    "28x28x1-h64-b1": ("pixelcnn", 1, 28, 64, 5, 1),
    "28x28x1-h64-b16": ("pixelcnn", 1, 28, 64, 5, 16),
    "gated-28x28x1-h40-b1": ("gated", 1, 28, 40, 6, 1),
    "gated-28x28x1-h40-b16": ("gated", 1, 28, 40, 6, 16),
    "seed-b1": ("pixelcnn", 3, 32, 256, 15, 1),
    "seed-b64": ("pixelcnn", 3, 32, 256, 15, 64),
}


def _setup(name, dtype):
    arch, c, size, h, blocks, n = SIZES[name]
    torch.manual_seed(0)
    config = ModelConfig(channels=c, image_size=(size, size), num_classes=10, arch=arch, hidden=h, blocks=blocks)
    model = build_model(config)
    with torch.no_grad():  # non-uniform output so that the images are not trivial
        model.head_out.weight.normal_(0, 0.05)
    model = model.to(dtype).eval()
    labels = torch.arange(n) % 10
    u = draw_uniforms((n, c, size, size), torch.Generator().manual_seed(0))
    return model, labels, u


@pytest.mark.parametrize("name", list(SIZES))
@pytest.mark.parametrize("method", ["naive", "cuda_persistent", "cuda_per_step"])
def test_sampling_cuda(benchmark, timing, gpu_sizes, name, method, monkeypatch):
    if name.startswith("seed") and not gpu_sizes:
        pytest.skip("seed size only with --gpu-sizes")
    assert load_extension() is not None and cuda_kernels_built(), "the extension must hold the CUDA kernels"
    benchmark.group = f"sampling_cuda {name}"
    model, labels, u = _setup(name, torch.float32 if timing else torch.float64)
    gpu_model, gpu_labels, gpu_u = model.cuda(), labels.cuda(), u.cuda()
    if method == "naive":
        rows = 2  # the full image would take hours at the seed size; per-sub-pixel cost is row-independent
        u_rows = gpu_u[:, :, :rows].contiguous()
        small = build_model(dataclasses.replace(model.config, image_size=(rows, u.shape[3])))
        small = small.to(device="cuda", dtype=next(model.parameters()).dtype).eval()
        small.load_state_dict(gpu_model.state_dict())
        run = lambda: sample(small, gpu_labels, 1.0, None, "naive", uniforms=u_rows)
        scale = u.shape[2] / rows
    else:
        monkeypatch.setenv("PIXELCNN_CUDA_STEPS_PER_LAUNCH", "1" if method == "cuda_per_step" else "0")
        run = lambda: sample(gpu_model, gpu_labels, 1.0, None, "cached_ext", uniforms=gpu_u)
        scale = 1.0
        image = run().cpu()
        want = sample(model, labels, 1.0, None, "cached_ext", uniforms=u)
        share = float((image == want).float().mean())
        if next(model.parameters()).dtype == torch.float64:
            assert share == 1.0, f"float64 must be bit-identical to the CPU op, {1 - share:.2%} differ"
        else:
            assert share >= 0.99, f"{1 - share:.2%} of sub-pixels differ from the CPU op"

    def timed():
        run()
        torch.cuda.synchronize()

    benchmark.extra_info["images"] = len(labels)
    benchmark.extra_info["time_scale"] = scale  # naive: seconds x scale = seconds for the whole image
    record(
        benchmark,
        timed,
        items=len(labels) / scale,
        unit="images",
        reference=method == "naive",
        rounds=1 if method == "naive" else 3,
        warmup=1,
    )
