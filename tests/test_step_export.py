"""The ONNX step model (Python driver through ONNX Runtime) and the Node.js example (onnxruntime-node, on the
sampler model) draw the same images as the PyTorch cached sampler for the same uniforms."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from export.__main__ import main as export_main
from export.__main__ import run as export_run
from export.onnx import ExportError, export_onnx, export_sampler_onnx, export_step_onnx
from export.parity import LOGIT_TOL, compare_step
from export.step import OrtStepSampler
from pixelcnn.sampling import draw_uniforms, sample
from tests.helpers import random_model, write_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE_EXAMPLE = os.path.join(ROOT, "export", "examples", "node")


@pytest.mark.parametrize(
    "channels,num_classes,size,arch",
    [
        (1, 10, (28, 28), "pixelcnn"),
        (3, 0, (7, 6), "pixelcnn"),
        (3, 4, (5, 6), "pixelcnn"),
        (3, 4, (5, 6), "gated"),
        (1, 0, (5, 6), "gated"),  # unconditional: the row loop's body has no label to take the batch size from
        (3, 0, (4, 5), "gated"),
    ],
)
def test_ort_step_sampler_equals_cached_sampler(tmp_path, channels, num_classes, size, arch):
    model = random_model(
        channels=channels,
        num_classes=num_classes,
        hidden=8,
        blocks=2,
        kernel_size=5,
        size=size,
        dtype=torch.float32,
        arch=arch,
    )
    path = export_step_onnx(model, str(tmp_path / "step.onnx"))  # exported at batch 2
    sampler = OrtStepSampler(path)
    assert (sampler.channels, (sampler.height, sampler.width)) == (channels, size)
    for n, temperature in ((1, 1.0), (3, 0.7)):
        r = compare_step(sampler, model, n=n, seed=n, temperature=temperature)
        assert r["mismatched_subpixels"] == 0 and r["max_abs_logit_diff"] <= LOGIT_TOL, r


def test_step_model_is_driven_by_context_and_labels(tmp_path):
    """Guards the equality test above against a model whose draws ignore their inputs."""
    model = random_model(
        channels=1, num_classes=10, hidden=8, blocks=2, kernel_size=5, size=(8, 8), dtype=torch.float32
    )
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


def test_step_driver_equals_cached_and_rejects_bad_input(tmp_path):
    model = random_model(channels=1, num_classes=3, hidden=8, blocks=1, kernel_size=3, size=(5, 5), dtype=torch.float32)
    step = export_step_onnx(model, str(tmp_path / "step.onnx"))
    u = draw_uniforms((2, 1, 5, 5), torch.Generator().manual_seed(4))
    sampler = OrtStepSampler(step)
    want = sample(model, torch.tensor([0, 2]), uniforms=u, method="cached")
    np.testing.assert_array_equal(sampler.sample(u.numpy(), np.array([0, 2])), want.numpy())

    full = export_onnx(model, str(tmp_path / "full.onnx"))
    with pytest.raises(ExportError, match="not a pixelcnn step model"):
        OrtStepSampler(full)
    with pytest.raises(ValueError, match=r"uniforms must be float32 \[N, 1, 5, 5\]"):
        sampler.sample(np.zeros((2, 1, 5, 4), np.float32), np.array([0, 1]))
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        sampler.sample(np.zeros((1, 1, 5, 5), np.float32), np.array([3]))


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


@pytest.mark.parametrize(
    "channels,num_classes,size,temperature,arch",
    [
        (1, 10, (28, 28), 1.0, "pixelcnn"),
        (3, 4, (6, 5), 0.75, "pixelcnn"),
        (3, 0, (5, 4), 1.0, "pixelcnn"),
        (3, 4, (6, 5), 0.75, "gated"),
        (1, 0, (5, 4), 1.0, "gated"),
    ],
)
def test_node_onnxruntime_draws_the_same_images_as_python(tmp_path, channels, num_classes, size, temperature, arch):
    """The Node.js example runs the sampler model (one run) and equals Python's cached sampler pixel for pixel, for
    sampling and for completion, for either architecture (sample.js is the same)."""
    node = node_command()
    path, model = write_checkpoint(
        tmp_path, channels=channels, size=size, num_classes=num_classes, hidden=8, blocks=2, kernel_size=5, arch=arch
    )
    sampler = str(tmp_path / "model.sampler.onnx")
    assert export_main(["onnx", "--checkpoint", path, "--sampler", "--precision", "float64", "--out", sampler]) == 0
    n = 3
    u = draw_uniforms((n, channels, *size), torch.Generator().manual_seed(11))
    np.save(tmp_path / "u.npy", u.numpy())
    labels = torch.tensor([1, 3, 0]) if num_classes else None
    reference = model.double()
    want = sample(reference, labels, temperature, uniforms=u, method="cached", n=n)
    np.save(tmp_path / "given.npy", want.numpy())
    u2 = draw_uniforms((n, channels, *size), torch.Generator().manual_seed(12))
    np.save(tmp_path / "u2.npy", u2.numpy())
    mask = torch.zeros(want.shape, dtype=torch.bool)
    mask[:, :, :2] = True
    want_completed = sample(
        reference, labels, temperature, uniforms=u2, method="cached", n=n, known=want, known_mask=mask
    )
    for uniforms, extra, expected in (
        ("u.npy", [], want),
        ("u2.npy", ["--complete", str(tmp_path / "given.npy"), "--keep-rows", "2"], want_completed),
    ):
        out = tmp_path / "node.pnm"
        cmd = (
            node
            + [
                "--model",
                sampler,
                "--uniforms",
                str(tmp_path / uniforms),
                "--temperature",
                str(temperature),
                "--out",
                str(out),
            ]
            + extra
        )
        if num_classes:
            cmd += ["--labels", ",".join(map(str, labels.tolist()))]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "images/s" in proc.stdout
        np.testing.assert_array_equal(read_pnm(str(out), n), expected.numpy())


def test_node_example_rejects_bad_input(tmp_path):
    node = node_command()
    model = random_model(channels=1, num_classes=3, hidden=8, blocks=1, kernel_size=3, size=(5, 5), dtype=torch.float32)
    sampler = export_sampler_onnx(model, str(tmp_path / "sampler.onnx"))
    np.save(tmp_path / "u.npy", np.zeros((2, 1, 5, 4), np.float32))
    np.save(tmp_path / "u_ok.npy", np.zeros((2, 1, 5, 5), np.float32))
    out = tmp_path / "o.pgm"
    run = lambda *args: subprocess.run(
        node + ["--out", str(out)] + list(args), capture_output=True, text=True, timeout=120
    )
    proc = run("--model", sampler, "--uniforms", str(tmp_path / "u.npy"), "--labels", "0,1")
    assert proc.returncode == 2 and "uniforms must be float32 [N, 1, 5, 5]" in proc.stderr, proc.stderr
    proc = run("--model", sampler, "--uniforms", str(tmp_path / "u_ok.npy"), "--labels", "0,3")
    assert proc.returncode == 2 and "labels must lie in 0..2" in proc.stderr, proc.stderr
    np.save(tmp_path / "given.npy", np.zeros((2, 1, 4, 5), np.uint8))
    proc = run(
        "--model",
        sampler,
        "--uniforms",
        str(tmp_path / "u_ok.npy"),
        "--labels",
        "0,1",
        "--complete",
        str(tmp_path / "given.npy"),
        "--keep-rows",
        "2",
    )
    assert proc.returncode == 2 and "--complete must hold uint8 [2,1,5,5]" in proc.stderr, proc.stderr
    full = export_onnx(model, str(tmp_path / "full.onnx"))
    proc = run("--model", full, "--labels", "0")
    assert proc.returncode == 2 and "not a pixelcnn sampler model" in proc.stderr, proc.stderr
    assert not out.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
