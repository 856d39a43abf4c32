"""The ONNX step model: ONNX Runtime (Python driver, and Node.js through onnxruntime-node) draws the same images
as the PyTorch cached sampler for the same uniforms."""
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from export.__main__ import main as export_main
from export.__main__ import run as export_run
from export.onnx import ExportError, export_onnx, export_step_onnx
from export.step import OrtStepSampler
from export.ort_sampler import main as ort_sampler_main
from export.parity import LOGIT_TOL, compare_step
from pixelcnn.sampling import draw_uniforms, sample
from tests.helpers import random_model, write_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE_EXAMPLE = os.path.join(ROOT, "export", "examples", "node")


@pytest.mark.parametrize("channels,num_classes,size", [(1, 10, (28, 28)), (3, 0, (7, 6)), (3, 4, (5, 6))])
def test_ort_step_sampler_equals_cached_sampler(tmp_path, channels, num_classes, size):
    model = random_model(channels=channels, num_classes=num_classes, hidden=8, blocks=2, kernel_size=5, size=size,
                         dtype=torch.float32)
    path = export_step_onnx(model, str(tmp_path / "step.onnx"))  # exported at batch 2
    sampler = OrtStepSampler(path)
    assert (sampler.channels, (sampler.height, sampler.width)) == (channels, size)
    for n, temperature in ((1, 1.0), (3, 0.7)):
        r = compare_step(sampler, model, n=n, seed=n, temperature=temperature)
        assert r["mismatched_subpixels"] == 0 and r["max_abs_logit_diff"] <= LOGIT_TOL, r


def test_step_model_is_driven_by_context_and_labels(tmp_path):
    """Guards the equality test above against a model whose draws ignore their inputs."""
    model = random_model(channels=1, num_classes=10, hidden=8, blocks=2, kernel_size=5, size=(8, 8),
                         dtype=torch.float32)
    sampler = OrtStepSampler(export_step_onnx(model, str(tmp_path / "step.onnx")))
    u = draw_uniforms((1, 1, 8, 8), torch.Generator().manual_seed(0)).numpy()
    same_u = np.repeat(u, 2, axis=0)
    images = sampler.sample(same_u, np.array([2, 7]))
    assert (images[0] != images[1]).mean() > 0.2  # same uniforms, other class: another image
    logits = []
    sampler.sample(u, np.array([2]), on_step=lambda feeds, out: logits.append(out[0]))
    assert len(logits) == 64
    assert float(np.abs(logits[9] - logits[10]).max()) > 0.3  # the distribution follows the context


def test_export_cli_step_prints_parity_and_writes_one_file(tmp_path, capsys):
    path, _ = write_checkpoint(tmp_path, size=(10, 10))
    out = tmp_path / "s.onnx"
    assert export_main(["onnx", "--checkpoint", path, "--step", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "0 sub-pixels differ" in printed and "-> OK" in printed
    assert sorted(os.listdir(tmp_path)) == ["model.pt", "s.onnx"]
    r = export_run(["onnx", "--checkpoint", path, "--step"])  # default name beside the checkpoint
    assert r["path"].endswith("model.step.onnx") and r["ok"]


def test_ort_sampler_cli_and_errors(tmp_path, capsys):
    model = random_model(channels=1, num_classes=3, hidden=8, blocks=1, kernel_size=3, size=(5, 5),
                         dtype=torch.float32)
    step = export_step_onnx(model, str(tmp_path / "step.onnx"))
    u = draw_uniforms((2, 1, 5, 5), torch.Generator().manual_seed(4))
    np.save(tmp_path / "u.npy", u.numpy())
    out = tmp_path / "img.npy"
    assert ort_sampler_main([step, "--labels", "0", "2", "--uniforms", str(tmp_path / "u.npy"), "--out",
                             str(out)]) == 0
    assert "images/s" in capsys.readouterr().out
    want = sample(model, torch.tensor([0, 2]), uniforms=u, method="cached")
    np.testing.assert_array_equal(np.load(out), want.numpy())
    assert ort_sampler_main([step, "--labels", "0", "--out", str(tmp_path / "grid.png")]) == 0

    full = export_onnx(model, str(tmp_path / "full.onnx"))
    with pytest.raises(ExportError, match="not a pixelcnn step model"):
        OrtStepSampler(full)
    sampler = OrtStepSampler(step)
    with pytest.raises(ValueError, match=r"uniforms must be float32 \[N, 1, 5, 5\]"):
        sampler.sample(np.zeros((2, 1, 5, 4), np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        sampler.sample(np.zeros((1, 1, 5, 5), np.float32), np.array([3]))
    assert ort_sampler_main([step, "--labels", "1", "--out", str(tmp_path / "x.jpg")]) == 2
    assert "must end in .npy or .png" in capsys.readouterr().err
    assert not (tmp_path / "x.jpg").exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]


def read_pnm(path: str, n: int) -> np.ndarray:
    """Binary PGM/PPM with ``n`` images stacked vertically -> uint8 [N, C, H, W]."""
    data = open(path, "rb").read()
    magic, dims, maxval, pixels = data.split(b"\n", 3)
    width, height = map(int, dims.split())
    assert maxval == b"255"
    c = {b"P5": 1, b"P6": 3}[magic]
    return np.frombuffer(pixels, np.uint8).reshape(n, height // n, width, c).transpose(0, 3, 1, 2)


def node_command():
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the Node.js example, but `node` is not on PATH (apt-get install nodejs npm)")
        pytest.skip("Node.js is not installed (apt-get install nodejs npm, then make install)")
    if not os.path.isdir(os.path.join(NODE_EXAMPLE, "node_modules", "onnxruntime-node")):
        pytest.fail(f"onnxruntime-node is not installed: run `make install` (npm ci in {NODE_EXAMPLE})")
    return [node, os.path.join(NODE_EXAMPLE, "sample.js")]


@pytest.mark.parametrize("channels,num_classes,size,temperature",
                         [(1, 10, (28, 28), 1.0), (3, 4, (6, 5), 0.8), (3, 0, (5, 4), 1.0)])
def test_node_onnxruntime_draws_the_same_images_as_python(tmp_path, channels, num_classes, size, temperature):
    node = node_command()
    path, model = write_checkpoint(tmp_path, channels=channels, size=size, num_classes=num_classes, hidden=8,
                                   blocks=2, kernel_size=5)
    step = str(tmp_path / "model.step.onnx")
    assert export_main(["onnx", "--checkpoint", path, "--step", "--out", step]) == 0
    n = 3
    u = draw_uniforms((n, channels, *size), torch.Generator().manual_seed(11))
    np.save(tmp_path / "u.npy", u.numpy())
    labels = torch.tensor([1, 3, 0])
    out = tmp_path / "node.pnm"
    cmd = node + ["--model", step, "--uniforms", str(tmp_path / "u.npy"), "--temperature", str(temperature),
                  "--out", str(out)]
    if num_classes:
        cmd += ["--labels", ",".join(map(str, labels.tolist()))]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "images/s" in proc.stdout
    want = sample(model, labels if num_classes else None, temperature, uniforms=u, method="cached", n=n)
    np.testing.assert_array_equal(read_pnm(str(out), n), want.numpy())


def test_node_example_rejects_bad_input(tmp_path):
    node = node_command()
    model = random_model(channels=1, num_classes=3, hidden=8, blocks=1, kernel_size=3, size=(5, 5),
                         dtype=torch.float32)
    step = export_step_onnx(model, str(tmp_path / "step.onnx"))
    np.save(tmp_path / "u.npy", np.zeros((2, 1, 5, 4), np.float32))
    out = tmp_path / "o.pgm"
    proc = subprocess.run(node + ["--model", step, "--uniforms", str(tmp_path / "u.npy"), "--labels", "0,1",
                                  "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "uniforms must be float32 [N, 1, H, 5]" in proc.stderr
    full = export_onnx(model, str(tmp_path / "full.onnx"))
    proc = subprocess.run(node + ["--model", full, "--labels", "0", "--height", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a step model" in proc.stderr
    assert not out.exists()
