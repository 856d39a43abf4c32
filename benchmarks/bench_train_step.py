"""Group "train_step": one Adam step (forward, NLL, backward, update) — reference eager vs the project's eager vs
torch.compile (+ Triton eager/compiled on a GPU). Each path's first-step loss and gradients are checked against the
reference before timing."""
import copy

import pytest
import torch

from benchmarks.conftest import record
from pixelcnn.likelihood import nll_nats
from pixelcnn.config import ModelConfig
from pixelcnn.model import PixelCNN

PATHS = ["reference", "eager", "compile", "triton", "triton-compile"]


@pytest.mark.parametrize("path", PATHS)
def test_train_step(benchmark, timing, path):
    benchmark.group = "train_step 28x28x1"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if path.startswith("triton") and device != "cuda":
        pytest.skip("the Triton path is timed on a GPU only (on CPU it runs in the interpreter)")
    h, blocks, n, size = (64, 5, 32, 28) if timing else (8, 1, 2, 8)
    torch.manual_seed(0)
    base = PixelCNN(ModelConfig(channels=1, image_size=(size, size), num_classes=10, hidden=h, blocks=blocks)).to(device)
    image = torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, device=device)
    labels = torch.arange(n, device=device) % 10

    ref_loss, ref_grad = first_grads_of(base, base, image, labels)
    model = copy.deepcopy(base)
    if path.startswith("triton"):
        model.set_conv_impl("triton")
    net = torch.compile(model) if path.endswith("compile") else model
    loss, grad = first_grads_of(net, model, image, labels)
    assert abs(loss - ref_loss) < 1e-4 and float((grad - ref_grad).abs().max()) < 1e-3
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        nll_nats(net(image, labels), image).backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
    record(benchmark, step, items=n, unit="images", reference=path == "reference")


def first_grads_of(net, model, image, labels):
    model.zero_grad()
    loss = nll_nats(net(image, labels), image)
    loss.backward()
    return float(loss.detach()), torch.cat([p.grad.flatten() for p in model.parameters()]).clone()
