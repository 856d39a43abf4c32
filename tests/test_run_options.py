"""The seed's configs, bad images named before anything is written, TensorBoard logging, and SIGINT/SIGTERM as a
clean stop that --resume continues on the uninterrupted run's loss curve."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from pixelcnn import train as train_cli
from pixelcnn.checkpoint import load_checkpoint
from pixelcnn.config import Config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_PARAMS = {  # the seed notebook's PARAMS
    "img_size": 32,
    "batch_size": 128,
    "epochs": 30,
    "lr": 3e-4,
    "weight_decay": 1e-5,
    "lr_factor": 0.5,
    "lr_patience": 5,
    "temperature": 0.6,
    "n_per_class": 2,
}


@pytest.mark.parametrize("dataset", ["cifar10", "mnist"])
def test_seed_config_files_hold_every_seed_value(dataset):
    path = os.path.join(REPO, "configs", f"seed-{dataset}.json")
    cfg = Config.load(path)
    assert cfg.dataset == dataset
    for key, value in SEED_PARAMS.items():
        assert getattr(cfg, key) == value, key
    assert (cfg.model.hidden, cfg.model.blocks, cfg.model.kernel_size) == (256, 15, 7)
    parsed, _ = train_cli.parse_args(["--config", path, "--epochs", "2"])  # flags still override the file
    assert parsed.epochs == 2 and parsed.model.hidden == 256


def write_folder(root, bad=(), truncated=()):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in ("a", "b"):
            os.makedirs(root / split / c, exist_ok=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    for name in bad:
        (root / name).write_bytes(b"not an image at all")
    for name in truncated:  # a truncated PNG: the header reads, the pixels do not
        data = (root / "train" / "a" / "0.png").read_bytes()
        (root / name).write_bytes(data[: len(data) // 2])


def test_bad_image_files_are_named_and_nothing_is_written(tmp_path, capsys):
    data = tmp_path / "data"
    write_folder(data, bad=["train/a/broken.png"], truncated=["test/b/cut.png"])
    args = ["--dataset", "folder", "--data-dir", str(data), "--channels", "1", "--epochs", "1"]
    args += ["--hidden", "8", "--blocks", "1", "--save-dir", str(tmp_path / "runs"), "--n-per-class", "1"]
    assert train_cli.main(args) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "1 of 9 image file(s)" in err and "--skip-bad-images" in err
    assert not (tmp_path / "runs").exists()  # nothing written before the check passed
    assert train_cli.main(args + ["--skip-bad-images"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 unreadable image file(s)" in out and "broken.png" in out
    assert "8 train / 8 test images" in out


def test_tensorboard_event_file_holds_the_scalars_and_samples(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = ["--epochs", "2", "--hidden", "8", "--blocks", "1", "--train-limit", "64", "--test-limit", "32"]
    args += ["--n-per-class", "1", "--save-dir", str(tmp_path), "--model-name", "m", "--tensorboard"]
    assert train_cli.main(args) == 0
    acc = EventAccumulator(str(tmp_path / "m" / "tb"), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"bits_per_dim/train", "bits_per_dim/test", "lr", "images_per_s"} <= set(tags["scalars"])
    with open(tmp_path / "m" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    got = [e.value for e in acc.Scalars("bits_per_dim/test")]
    assert got == pytest.approx([float(r["test_bpd"]) for r in rows], abs=1e-5)
    assert [e.step for e in acc.Scalars("lr")] == [int(r["step"]) for r in rows]
    assert len(acc.Images("samples")) == 2
    assert (tmp_path / "m" / "best" / "model.safetensors").exists()  # best/ as a pretrained folder too


def test_tensorboard_missing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    args = ["--epochs", "1", "--hidden", "8", "--blocks", "1", "--train-limit", "32", "--test-limit", "16"]
    assert train_cli.main(args + ["--save-dir", str(tmp_path), "--tensorboard"]) == 2
    assert "pip install tensorboard" in capsys.readouterr().err


BASE = ["--epochs", "3", "--batch-size", "32", "--hidden", "16", "--blocks", "2", "--n-per-class", "1"]
BASE += ["--checkpoint-every", "5", "--model-name", "m"]


def run_cli(args):
    return subprocess.Popen(
        [sys.executable, "-m", "pixelcnn.train", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143)])
def test_sigterm_mid_epoch_checkpoints_that_step_and_resume_matches_uninterrupted_run(tmp_path, sig, code):
    ref = run_cli(BASE + ["--save-dir", str(tmp_path / "ref")])
    run = run_cli(BASE + ["--save-dir", str(tmp_path / "run")])
    ckpt = tmp_path / "run" / "m" / "last.pt"
    deadline, step = time.time() + 600, 0
    while time.time() < deadline and step < 58:  # epoch 2 of 3 (46 steps per epoch)
        time.sleep(0.05)
        if ckpt.exists():
            try:
                step = load_checkpoint(str(ckpt))["step"]
            except Exception:  # noqa: BLE001  (a rename may land between exists() and open())
                pass
    run.send_signal(sig)
    out, err = run.communicate(timeout=300)
    assert run.returncode == code, err
    assert "Traceback" not in err
    line = [ln for ln in err.splitlines() if ln.startswith(sig.name)]
    assert len(line) == 1, err
    state = load_checkpoint(str(ckpt))
    assert state["step"] >= 58 and state["epoch_step"] > 0
    assert f"step {state['step']};" in line[0] and str(ckpt) in line[0] and "--resume" in line[0]
    resumed = run_cli(BASE + ["--save-dir", str(tmp_path / "run"), "--resume"])
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err
    assert f"resumed at epoch {state['epoch'] + 1} step {state['step']}" in out
    ref.communicate(timeout=900)
    with open(tmp_path / "run" / "m" / "metrics.csv") as f:
        got = list(csv.DictReader(f))
    with open(tmp_path / "ref" / "m" / "metrics.csv") as f:
        want = list(csv.DictReader(f))
    assert [r["epoch"] for r in got] == ["1", "2", "3"]
    for a, b in zip(got, want, strict=True):
        assert a["step"] == b["step"]
        assert abs(float(a["train_bpd"]) - float(b["train_bpd"])) < 2e-3, (a, b)
        assert abs(float(a["test_bpd"]) - float(b["test_bpd"])) < 2e-3, (a, b)
