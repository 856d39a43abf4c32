"""Group "train_step <shape>": one Adam step (forward, NLL, backward, update) — the textbook reference
(benchmarks/reference.py, eager) vs the project's eager default vs its compiled step as ``pixelcnn.train --compile``
runs it (+ Triton eager/compiled on a GPU). Each path's first-step loss and gradients are checked against the
reference's before timing.

Beside them, ``gated-<path>``: the gated PixelCNN at matched live parameter count (``bench_forward.GATED``), through
the same paths, checked against its own eager step (no textbook form) and paired with the textbook PixelCNN's step."""

import pytest
import torch

from benchmarks.bench_forward import GATED
from benchmarks.conftest import record, skip_unless_gpu_sizes
from benchmarks.reference import TextbookPixelCNN, textbook_loss
from pixelcnn.architectures import build_model
from pixelcnn.config import ModelConfig
from pixelcnn.likelihood import nll_nats

PATHS = ["reference", "eager", "compile", "triton", "triton-compile"]
# shape -> (channels, size, hidden, blocks, batch); "-h256" is the seed's size, run with --gpu-sizes
SHAPES = {"28x28x1": (1, 28, 64, 5, 32), "32x32x3-h256": (3, 32, 256, 15, 32)}


def build(shape, timing, arch, device):
    c, size, h, blocks, n = SHAPES[shape] if timing else (SHAPES[shape][0], 8, 8, 1, 2)
    if arch == "gated" and timing:
        h, blocks = GATED[shape]
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, channels=c, image_size=(size, size), num_classes=10, hidden=h, blocks=blocks)
    model = build_model(config).to(device)
    with torch.no_grad():
        model.head_out.weight.normal_(0, 0.05)
    return model, c, size, n


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("arch", ["pixelcnn", "gated"])
def test_train_step(benchmark, request, timing, shape, path, arch):
    skip_unless_gpu_sizes(request, shape.endswith("-h256"))
    benchmark.group = f"train_step {shape}"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if path.startswith("triton") and device != "cuda":
        pytest.skip("the Triton path is timed on a GPU only (on CPU it runs in the interpreter)")
    gated = arch == "gated"
    if gated and path == "reference":
        pytest.skip("the textbook reference is a PixelCNN: gated paths are paired with it")
    model, c, size, n = build(shape, timing, arch, device)
    image = torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, device=device)
    labels = torch.arange(n, device=device) % 10
    base = build(shape, timing, "pixelcnn", device)[0] if gated else model
    reference = TextbookPixelCNN.from_state_dict(base.state_dict()).to(device)
    if gated:  # its own eager step (the cropped conv, tested against F.conv2d on the full kernel in tests/)
        ref_loss, ref_grads = first_grads_of(model, nll_nats, model, image, labels)
    else:
        ref_loss, ref_grads = first_grads_of(reference, textbook_loss, reference, image, labels)

    if path == "reference":
        net, loss_of, params = reference, textbook_loss, reference
    else:
        if path.startswith("triton"):
            model.set_conv_impl("triton")
        net = torch.compile(model) if path.endswith("compile") else model
        loss_of, params = nll_nats, model
    loss, grads = first_grads_of(net, loss_of, params, image, labels)
    assert abs(loss - ref_loss) < 1e-4, (loss, ref_loss)
    for name, g in grads.items():
        assert float((g - ref_grads[name]).abs().max()) < 1e-3, name
    step = adam_step(net, loss_of, params, image, labels)
    # the reference's own step, run alternately with this path's for the paired ratio
    paired = adam_step(reference, textbook_loss, reference, image, labels) if path != "reference" and timing else None
    name = f"gated-{path}" if gated else path
    record(benchmark, step, items=n, unit="images", reference=path == "reference", path=name, paired_with=paired)


def adam_step(net, loss_of, params, image, labels):
    """One Adam step of ``net`` on the batch (synchronised on CUDA), as a callable to time."""
    opt = torch.optim.Adam(params.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss_of(net(image, labels), image).backward()
        opt.step()
        if image.is_cuda:
            torch.cuda.synchronize()

    return step


def first_grads_of(net, loss_of, params, image, labels):
    params.zero_grad()
    loss = loss_of(net(image, labels), image)
    loss.backward()
    return float(loss.detach()), {k: p.grad.clone() for k, p in params.named_parameters()}
