"""Pretrained folders (config.json + model.safetensors + model card): round trip, mismatches named, repo ids through
the Hub cache offline, the CLIs on a folder, and the committed pretrained MNIST model re-measured on real images."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from export.__main__ import run as export_run
from pixelcnn.checkpoint import CheckpointError, load_model
from pixelcnn.config import ModelConfig
from pixelcnn.hub import PretrainedError, load_pretrained
from pixelcnn.model import PixelCNN
from pixelcnn.sampling import sample

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAINED = os.path.join(REPO, "pretrained", "mnist")
SMALL = ModelConfig(channels=1, image_size=(8, 8), num_classes=3, hidden=8, blocks=1)


def small_model(seed=0):
    torch.manual_seed(seed)
    return PixelCNN(SMALL).eval()


def test_save_then_load_gives_identical_logits_and_samples(tmp_path):
    model = small_model()
    model.save_pretrained(str(tmp_path / "m"), card={"test_bpd": 1.5, "command": "python -m pixelcnn.train --x"})
    assert sorted(os.listdir(tmp_path / "m")) == ["README.md", "config.json", "model.safetensors"]
    loaded = PixelCNN.from_pretrained(str(tmp_path / "m"))
    assert loaded.config == model.config
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        assert torch.equal(model(x, y), loaded(x, y))
    a = sample(model, y, 1.0, torch.Generator().manual_seed(3), "cached", n=4)
    b = sample(loaded, y, 1.0, torch.Generator().manual_seed(3), "cached", n=4)
    assert torch.equal(a, b)
    card = (tmp_path / "m" / "README.md").read_text()
    assert "1.50000" in card and "python -m pixelcnn.train --x" in card and "hidden 8" in card
    # the tensors really are safetensors, readable without this package
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert torch.equal(tensors["head_hidden.weight"], model.head_hidden.weight)


def test_mismatched_config_or_tensors_are_named(tmp_path):
    d = tmp_path / "m"
    small_model().save_pretrained(str(d))
    cfg = json.loads((d / "config.json").read_text())
    cfg["model"]["hidden"] = 16
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PretrainedError, match=r"shape .* the config's model needs"):
        load_pretrained(str(d))
    cfg["model"]["hidden"] = "8"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PretrainedError, match=r"'hidden' must be int"):
        load_pretrained(str(d))
    cfg["model"]["hidden"] = 8
    cfg["model"]["blocks"] = 2
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PretrainedError, match=r"missing tensor 'blocks\.1\."):
        load_pretrained(str(d))


def test_repo_id_not_in_cache_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    code = (
        "from pixelcnn.hub import load_pretrained, PretrainedError\n"
        "try:\n    load_pretrained('someone/pixelcnn-mnist')\nexcept PretrainedError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "local cache (HF_HUB_OFFLINE is set)" in out.stdout, out.stdout + out.stderr


def test_repo_id_in_cache_loads_offline(tmp_path):
    """A repo laid out as huggingface_hub's cache stores it (models--owner--name/snapshots/<rev>)."""
    model = small_model(1)
    repo = tmp_path / "cache" / "models--someone--tiny"
    rev = "0123456789abcdef0123456789abcdef01234567"
    model.save_pretrained(str(repo / "snapshots" / rev))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    code = (
        "import torch\nfrom pixelcnn.model import PixelCNN\n"
        "m = PixelCNN.from_pretrained('someone/tiny')\nprint(float(m.head_hidden.weight.detach().double().sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert abs(float(out.stdout) - float(model.head_hidden.weight.detach().double().sum())) < 1e-12


def test_sample_and_export_clis_take_a_folder(tmp_path):
    d = tmp_path / "m"
    small_model().save_pretrained(str(d))
    out = tmp_path / "s.png"
    r = subprocess.run(
        [sys.executable, "-m", "pixelcnn.sample", "--checkpoint", str(d), "--out", str(out), "--n-per-class", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0
    model, cfg, meta = load_model(str(d))
    assert cfg.model == SMALL and meta["num_classes"] == 3
    # the weights file stands for its folder (make web-demo exports from pretrained/mnist/model.safetensors)
    from_file, _, _ = load_model(str(d / "model.safetensors"))
    assert all(
        torch.equal(a, b) for a, b in zip(from_file.state_dict().values(), model.state_dict().values(), strict=True)
    )
    sampler = tmp_path / "m.sampler.onnx"
    result = export_run(["onnx", "--checkpoint", str(d / "model.safetensors"), "--sampler", "--out", str(sampler)])
    assert result["ok"] and sampler.stat().st_size > 0, result
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(str(tmp_path / "nowhere" / "x"))


def _real_test_images():
    shared = os.environ.get("PIXELCNN_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
    root = os.path.join(shared, "mnist-t10k-folder", "test")
    if not os.path.isdir(root):
        pytest.skip(
            f"real MNIST images not found at {root} (../shared/data beside the checkout, or set "
            f"PIXELCNN_SHARED_DATA): the pretrained model's bits/dim cannot be re-measured"
        )
    from pixelcnn.data import _read_folder

    return _read_folder(root, 1, 0)


def test_pretrained_mnist_loads_and_its_recorded_bits_per_dim_holds():
    model = PixelCNN.from_pretrained(PRETRAINED)
    assert model.config.image_size == (28, 28) and model.config.channels == 1
    size = sum(os.path.getsize(os.path.join(PRETRAINED, f)) for f in os.listdir(PRETRAINED))
    assert size < 5 * 2**20
    recorded = json.load(open(os.path.join(PRETRAINED, "config.json")))["test_bpd"]
    assert f"{recorded:.5f}" in open(os.path.join(PRETRAINED, "README.md")).read()
    x, y, _ = _real_test_images()
    assert len(y) == 1000
    total = 0.0
    with torch.no_grad():
        for s in range(0, len(y), 200):  # independent of nll_nats: plain cross-entropy over the 256 levels
            logits = model(x[s : s + 200], y[s : s + 200]).double()
            total += float(F.cross_entropy(logits, x[s : s + 200].long(), reduction="sum"))
    bpd = total / x.numel() / torch.log(torch.tensor(2.0, dtype=torch.float64)).item()
    assert abs(bpd - recorded) < 1e-4, (bpd, recorded)
