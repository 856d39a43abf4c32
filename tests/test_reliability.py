"""Crash safety, resume, bad-input hardening and multi-process (DDP over gloo) training."""

import csv
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from pixelcnn import train as train_cli
from pixelcnn.checkpoint import load_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVERY = 5
BASE = [
    "--epochs",
    "3",
    "--batch-size",
    "32",
    "--hidden",
    "16",
    "--blocks",
    "2",
    "--n-per-class",
    "1",
    "--checkpoint-every",
    str(EVERY),
    "--model-name",
    "m",
]


def run_cli(args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "pixelcnn.train", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def metrics(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    ref = run_cli(BASE + ["--save-dir", str(tmp_path / "ref")])
    killed = run_cli(BASE + ["--save-dir", str(tmp_path / "run")])
    ckpt = tmp_path / "run" / "m" / "last.pt"
    deadline = time.time() + 600  # generous: a busy 2-core machine runs both trainings side by side
    step = 0
    while time.time() < deadline and step < 60:  # epoch 2 of 3 (46 steps per epoch)
        time.sleep(0.05)
        if ckpt.exists():
            try:
                step = load_checkpoint(str(ckpt))["step"]
            except Exception:  # noqa: BLE001  (a rename may land between exists() and open())
                pass
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert step >= 60, "training did not reach the kill point in time"
    state = load_checkpoint(str(ckpt))  # the file is whole: atomic rename
    assert state["step"] % EVERY == 0 or state["epoch_step"] == 0
    resumed = run_cli(BASE + ["--save-dir", str(tmp_path / "run"), "--resume"])
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err
    assert f"resumed at epoch {state['epoch'] + 1} step {state['step']}" in out
    ref.communicate(timeout=900)
    got, want = metrics(tmp_path / "run" / "m" / "metrics.csv"), metrics(tmp_path / "ref" / "m" / "metrics.csv")
    assert [r["epoch"] for r in got] == ["1", "2", "3"]  # no duplicated or missing epochs
    for a, b in zip(got, want, strict=True):
        assert a["step"] == b["step"]
        assert abs(float(a["test_bpd"]) - float(b["test_bpd"])) < 2e-3, (a, b)
    run_dir = tmp_path / "run" / "m"
    assert not [p for p in os.listdir(run_dir) + os.listdir(run_dir / "samples") if p.startswith(".tmp")]


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    real, calls = train_cli.loss_fn, []

    def diverging(*args, **kwargs):  # the 4th step's loss is NaN, as after an exploding update
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 4 else loss

    monkeypatch.setattr(train_cli, "loss_fn", diverging)
    code = train_cli.main(
        ["--epochs", "1", "--checkpoint-every", "1", "--hidden", "8", "--blocks", "1", "--save-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "loss became nan" in err and "last good checkpoint" in err, err
    state = load_checkpoint(str(tmp_path / "pixelcnn" / "last.pt"))
    assert state["step"] == 3 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_resume_with_other_architecture_names_the_mismatch(tmp_path, capsys):
    args = [
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--blocks",
        "1",
        "--n-per-class",
        "1",
        "--max-steps",
        "2",
        "--save-dir",
        str(tmp_path),
    ]
    assert train_cli.main(args) == 0
    assert train_cli.main(args + ["--resume", "--hidden", "16"]) == 2
    assert "model.hidden: checkpoint 8 vs requested 16" in capsys.readouterr().err


def test_image_size_too_small_for_kernel_is_refused(capsys):
    assert train_cli.main(["--img-size", "3", "--kernel-size", "7"]) == 2
    assert "too small for kernel_size" in capsys.readouterr().err


def test_cuda_out_of_memory_suggests_smaller_batch(monkeypatch, capsys):
    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(train_cli, "train", oom)
    assert train_cli.main(["--epochs", "1"]) == 3
    assert "--batch-size" in capsys.readouterr().err


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_first_step_gradients_equal_one_process(tmp_path):
    import torch.multiprocessing as mp

    from tests.ddp_worker import first_step_grads

    mp.spawn(first_step_grads, args=(2, free_port(), str(tmp_path), 32), nprocs=2, join=True)
    first_step_grads(0, 1, free_port(), str(tmp_path), 32)
    g2, g1 = torch.load(tmp_path / "grads2.pt"), torch.load(tmp_path / "grads1.pt")
    assert g1.keys() == g2.keys()
    for name in g1:
        assert torch.allclose(g1[name], g2[name], rtol=1e-4, atol=1e-6), name
    assert any(g.abs().sum() > 0 for g in g1.values())


@pytest.mark.slow
def test_torchrun_two_processes_train_and_only_rank0_writes(tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [
        torchrun,
        "--nproc_per_node=2",
        "--master_port",
        str(free_port()),
        "-m",
        "pixelcnn.train",
        "--epochs",
        "1",
        "--max-steps",
        "6",
        "--hidden",
        "8",
        "--blocks",
        "1",
        "--n-per-class",
        "1",
        "--save-dir",
        str(tmp_path),
        "--device",
        "cpu",
    ]
    r = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("PixelCNN:") == 1 and "world size 2" in r.stdout
    rows = metrics(tmp_path / "pixelcnn" / "metrics.csv")
    assert len(rows) == 1 and int(rows[0]["step"]) == 6
